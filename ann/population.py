"""Train a population of MLPs at once: one vectorized program for many networks.

The networks of the tutorial are so small that a one-network training loop spends nearly all of
its time on per-operation overhead. A :class:`Population` stacks up to ``size`` members along a
leading member dimension and trains them together with batched matrix products, so that one set
of kernels serves every member.

Layout. Activations are ``[member, unit, point]``. Layer ``l`` of the stack holds a weight of
shape ``[size, padded_widths[l], padded_widths[l - 1]]`` (the first layer reads the one input,
the last writes the one output) and a bias of shape ``[size, padded_widths[l], 1]``. Each member
computes exactly its own network:

- a member's real weights sit in the top-left corner of each layer; the padded units have zero
  weights and bias, so they stay at zero and contribute nothing;
- a member shallower than the stack passes through the extra hidden layers unchanged: their
  weight is the identity on the member's last hidden units and their bias zero (ReLU of a
  non-negative activation is itself);
- every update is multiplied by a per-element learning-rate tensor that is the member's
  learning rate on its real weights and zero elsewhere, so padding and pass-through layers
  never change.

Gradients are written out by hand (the backward pass of a ReLU MLP under L1 loss) so that one
training step is a plain function of tensors, with no autograd graph to build each epoch.
SGD and Adam (PyTorch's defaults for betas and eps) run per member, each with its own learning
rate and, for Adam, its own moments and step count.

Members join and leave between calls of :meth:`Population.train_until_report`, which trains
until the next epoch at which some member reports, so the caller can refill the population.
The members occupy the first rows of the stack (a leaving member's row is filled by the last
one), so training never computes empty rows. A member's numbers depend on the padded widths
but not on its row or on the other members: trained on the same device in a stack of the same
widths, alone or among others, it follows the same trajectory to the last bit (tested on the
CPU).
"""

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from ann.data import QuadraticData
from ann.model import build_mlp, hidden_widths_of
from ann.training import Report, TrainingResult

logger = logging.getLogger(__name__)

POPULATION_OPTIMIZERS = ("SGD", "Adam")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def padded_widths_for(width_lists: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The smallest stack of hidden widths that holds every network in ``width_lists``.

    Layer ``l`` must hold each member's layer ``l``, or, past a member's depth, its last hidden
    layer, which the member passes through unchanged.
    """
    if not width_lists:
        raise ValueError("padded_widths_for needs at least one list of hidden widths")

    depth = max(len(widths) for widths in width_lists)
    return tuple(
        max(widths[min(layer, len(widths) - 1)] for widths in width_lists)
        for layer in range(depth)
    )


@dataclass(frozen=True)
class MemberReport:
    """A member's :class:`~ann.training.Report`; ``finished`` once it ran all its epochs."""

    member: int
    report: Report
    finished: bool


@dataclass
class _Member:
    hidden_widths: tuple[int, ...]
    optimizer_name: str
    epochs: int
    joined: float
    epochs_run: int = 0
    loss_curve: list[float] = field(default_factory=list)
    val_l1: float = math.nan


class Population:
    """Up to ``size`` ReLU MLPs (1 input, 1 output) training full-batch on one data set.

    Members are named by the id :meth:`add` returns.

    Args:
        data: the training and validation points; the population computes in their dtype.
        size: the most members it holds at once.
        padded_widths: the hidden widths of the stack; every member must fit in it (see
            :func:`padded_widths_for`).
        report_every: members report every ``report_every`` of their own epochs and at their
            last epoch, as :func:`ann.training.train` does.
        device: where the population trains.
    """

    def __init__(
        self,
        data: QuadraticData,
        *,
        size: int,
        padded_widths: Sequence[int],
        report_every: int,
        device: torch.device,
    ) -> None:
        if size < 1:
            raise ValueError(f"population size must be a positive integer, got {size}")
        if not padded_widths or min(padded_widths) < 1:
            raise ValueError(f"padded widths must be positive integers, got {padded_widths}")
        if report_every < 1:
            raise ValueError(f"report_every must be a positive integer, got {report_every}")

        self.size = size
        self.padded_widths = tuple(padded_widths)
        self.report_every = report_every
        self.device = device
        self._members: dict[int, _Member] = {}
        self._rows: list[int] = []  # member ids, by row
        self._next_id = 0

        # Points along the last dimension: [1, 1, points], broadcast over members.
        self._x = data.x.to(device).reshape(1, 1, -1)
        self._y = data.y.to(device).reshape(1, 1, -1)
        self._x_val = data.x_val.to(device).reshape(1, 1, -1)
        self._y_val = data.y_val.to(device).reshape(1, 1, -1)
        self._x_transposed = self._x.reshape(-1, 1)

        dtype = data.x.dtype
        fan_ins = (1, *self.padded_widths)
        fan_outs = (*self.padded_widths, 1)
        self._weights = [
            torch.zeros(size, out, fan_in, dtype=dtype, device=device)
            for out, fan_in in zip(fan_outs, fan_ins, strict=True)
        ]
        self._biases = [torch.zeros(size, out, 1, dtype=dtype, device=device) for out in fan_outs]
        # Learning rate per element and optimizer: the member's rate on its real weights if it
        # uses that optimizer, zero elsewhere.
        self._sgd_lr = [torch.zeros_like(p) for p in self._weights + self._biases]
        self._adam_lr = [torch.zeros_like(p) for p in self._weights + self._biases]
        self._exp_avg = [torch.zeros_like(p) for p in self._weights + self._biases]
        self._exp_avg_sq = [torch.zeros_like(p) for p in self._weights + self._biases]
        self._is_adam = torch.zeros(size, 1, 1, dtype=dtype, device=device)
        self._adam_steps = torch.zeros(size, 1, 1, dtype=dtype, device=device)
        self._pending_losses: list[torch.Tensor] = []
        self._views: dict[tuple[int, int], list[torch.Tensor]] = {}

    # Membership ------------------------------------------------------------------------------

    @property
    def n_members(self) -> int:
        """How many members the population holds."""
        return len(self._rows)

    @property
    def is_full(self) -> bool:
        """Whether :meth:`add` would be refused."""
        return self.n_members == self.size

    def add(self, model: nn.Sequential, *, optimizer_name: str, lr: float, epochs: int) -> int:
        """Add ``model`` (made by :func:`ann.model.build_mlp`) and return its member id.

        The member starts from ``model``'s current weights and trains for ``epochs`` epochs
        with optimizer ``optimizer_name`` at learning rate ``lr``.

        Raises:
            ValueError: the population is full, the network does not fit the padded widths,
                or the optimizer, learning rate or epochs are invalid.
        """
        if self.is_full:
            raise ValueError(f"the population is full ({self.size} members)")
        if optimizer_name not in POPULATION_OPTIMIZERS:
            raise ValueError(
                f"a population trains with {' or '.join(POPULATION_OPTIMIZERS)}, "
                f"not {optimizer_name!r}"
            )
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if epochs < 1:
            raise ValueError(f"epochs must be a positive integer, got {epochs}")
        widths = tuple(hidden_widths_of(model))
        if padded_widths_for([widths, self.padded_widths]) != self.padded_widths:
            raise ValueError(
                f"a network with hidden widths {list(widths)} does not fit this population's "
                f"padded widths {list(self.padded_widths)}"
            )

        row = self.n_members
        self._clear_row(row)
        rates = self._adam_lr if optimizer_name == "Adam" else self._sgd_lr
        self._write_row(row, model, rates, lr)
        self._is_adam[row] = float(optimizer_name == "Adam")

        member_id = self._next_id
        self._next_id += 1
        self._members[member_id] = _Member(widths, optimizer_name, epochs, time.perf_counter())
        self._rows.append(member_id)
        return member_id

    def remove(self, member_id: int) -> None:
        """Take member ``member_id`` out; the last row moves into its row."""
        row = self._rows.index(member_id)
        last = self.n_members - 1
        if row != last:
            for tensor in self._row_tensors():
                tensor[row] = tensor[last]
            self._rows[row] = self._rows[last]
        self._clear_row(last)
        self._rows.pop()
        del self._members[member_id]

    def member_model(self, member_id: int) -> nn.Sequential:
        """Member ``member_id`` as a one-network ``nn.Sequential`` on the CPU, in the
        population's dtype."""
        row = self._rows.index(member_id)
        widths = self._members[member_id].hidden_widths
        model = build_mlp(widths, torch.Generator()).to(self._weights[0].dtype)
        linears = iter(layer for layer in model if isinstance(layer, nn.Linear))
        with torch.no_grad():
            for layer, (rows, columns) in enumerate(self._corners(widths)):
                if rows == 0:
                    continue
                linear = next(linears)
                linear.weight.copy_(self._weights[layer][row, :rows, :columns])
                linear.bias.copy_(self._biases[layer][row, :rows, 0])
        return model

    def member_result(self, member_id: int, *, stopped_early: bool) -> TrainingResult:
        """Member ``member_id``'s training so far, as :func:`ann.training.train` returns it.

        ``seconds`` is the wall time since the member joined, shared with the other members.
        """
        member = self._members[member_id]
        if not member.loss_curve:
            raise ValueError(f"member {member_id} has not reported yet")
        return TrainingResult(
            loss_curve=list(member.loss_curve),
            val_l1=member.val_l1,
            epochs_run=member.epochs_run,
            stopped_early=stopped_early,
            seconds=time.perf_counter() - member.joined,
        )

    # Training --------------------------------------------------------------------------------

    def train_until_report(self) -> list[MemberReport]:
        """Train every member up to the next epoch at which at least one of them reports.

        Returns the reports of that epoch. The train L1 of a report is the loss computed during
        the report epoch (before its update) and the validation L1 is measured after the
        update, as in :func:`ann.training.train`. Non-finite losses are reported as they are; a
        diverged member never disturbs the others.
        """
        if not self._rows:
            raise ValueError("the population has no members to train")

        n_epochs = min(self._epochs_to_next_report(member) for member in self._members.values())
        self._pending_losses.clear()  # left over if an earlier call was interrupted
        weights, biases = self._in_use(self._weights), self._in_use(self._biases)
        optimizers = self._optimizers_in_use()
        for _ in range(n_epochs):
            self._pending_losses.append(self._train_one_epoch(weights, biases, optimizers))

        return self._collect_reports(n_epochs, weights, biases)

    def epoch_step(self) -> Callable[[], torch.Tensor]:
        """A function that trains the current members for one epoch and returns their losses,
        with no reports or bookkeeping: for benchmarks and ``torch.compile``. Membership must
        not change while it is in use."""
        weights, biases = self._in_use(self._weights), self._in_use(self._biases)
        optimizers = self._optimizers_in_use()
        return lambda: self._train_one_epoch(weights, biases, optimizers)

    def _optimizers_in_use(self) -> frozenset[str]:
        return frozenset(member.optimizer_name for member in self._members.values())

    def _epochs_to_next_report(self, member: _Member) -> int:
        next_report = (member.epochs_run // self.report_every + 1) * self.report_every
        return min(next_report, member.epochs) - member.epochs_run

    def _collect_reports(
        self, n_epochs: int, weights: list[torch.Tensor], biases: list[torch.Tensor]
    ) -> list[MemberReport]:
        losses = torch.stack(self._pending_losses).cpu()
        self._pending_losses.clear()
        with torch.no_grad():
            output, _ = self._forward(self._x_val, weights, biases)
            val_l1 = (output - self._y_val).abs().mean(dim=(1, 2)).cpu().tolist()

        reports = []
        for row, member_id in enumerate(self._rows):
            member = self._members[member_id]
            member.loss_curve += losses[:, row].tolist()
            member.epochs_run += n_epochs
            member.val_l1 = val_l1[row]
            finished = member.epochs_run == member.epochs
            if member.epochs_run % self.report_every and not finished:
                continue
            report = Report(member.epochs_run, member.loss_curve[-1], member.val_l1)
            reports.append(MemberReport(member_id, report, finished))

        logger.debug("population: %d reports after %d epochs", len(reports), n_epochs)
        return reports

    def _train_one_epoch(
        self, weights: list[torch.Tensor], biases: list[torch.Tensor], optimizers: frozenset[str]
    ) -> torch.Tensor:
        """One full-batch step for every member; returns the members' L1 losses."""
        output, hidden = self._forward(self._x, weights, biases)
        difference = output - self._y
        losses = difference.abs().mean(dim=(1, 2))

        gradients = self._backward(difference, hidden, weights)
        self._update(weights + biases, gradients, optimizers)
        return losses

    @staticmethod
    def _forward(
        x: torch.Tensor, weights: list[torch.Tensor], biases: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output ``[members, 1, points]`` and each hidden layer's ReLU activations."""
        hidden = [torch.relu_(torch.addcmul(biases[0], weights[0], x))]
        for weight, bias in zip(weights[1:-1], biases[1:-1], strict=True):
            hidden.append(torch.relu_(torch.baddbmm(bias, weight, hidden[-1])))
        output = torch.baddbmm(biases[-1], weights[-1], hidden[-1])
        return output, hidden

    def _backward(
        self, difference: torch.Tensor, hidden: list[torch.Tensor], weights: list[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Gradients of each member's mean L1 loss, weights first, then biases."""
        n_points = difference.shape[-1]
        upstream = torch.sign(difference) * (1.0 / n_points)
        weight_gradients, bias_gradients = [], []
        inputs = [self._x, *hidden]

        for layer in range(len(weights) - 1, -1, -1):
            if layer < len(weights) - 1:
                upstream = torch.ops.aten.threshold_backward(upstream, hidden[layer], 0.0)
            bias_gradients.append(upstream.sum(dim=2, keepdim=True))
            if layer == 0:
                weight_gradients.append(torch.matmul(upstream, self._x_transposed))
                break
            weight_gradients.append(torch.bmm(upstream, inputs[layer].transpose(1, 2)))
            upstream = torch.bmm(weights[layer].transpose(1, 2), upstream)

        return weight_gradients[::-1] + bias_gradients[::-1]

    def _update(
        self,
        parameters: list[torch.Tensor],
        gradients: list[torch.Tensor],
        optimizers: frozenset[str],
    ) -> None:
        """Apply each member's optimizer step; ``optimizers`` are the names the members use."""
        if "SGD" in optimizers:
            sgd_lr = self._in_use(self._sgd_lr)
            torch._foreach_addcmul_(parameters, sgd_lr, gradients, value=-1.0)
        if "Adam" not in optimizers:
            return

        # Adam as torch.optim.Adam computes it, with a step count and bias corrections per
        # member (clamped at one step so that SGD members, whose rate is zero here, stay finite).
        beta1, beta2 = ADAM_BETAS
        n = self.n_members
        adam_steps = self._adam_steps[:n]
        adam_steps.add_(self._is_adam[:n])
        steps = adam_steps.clamp(min=1.0)
        step_size = [1.0 / (1 - torch.pow(beta1, steps))] * len(parameters)
        bias_correction2_sqrt = [torch.sqrt(1 - torch.pow(beta2, steps))] * len(parameters)

        exp_avg, exp_avg_sq = self._in_use(self._exp_avg), self._in_use(self._exp_avg_sq)
        torch._foreach_lerp_(exp_avg, gradients, 1 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, gradients, gradients, value=1 - beta2)
        denominators = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denominators, bias_correction2_sqrt)
        torch._foreach_add_(denominators, ADAM_EPS)
        scaled_steps = torch._foreach_mul(self._in_use(self._adam_lr), step_size)
        torch._foreach_mul_(scaled_steps, exp_avg)
        torch._foreach_addcdiv_(parameters, scaled_steps, denominators, value=-1.0)

    # Rows --------------------------------------------------------------------------------------

    def _in_use(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Views of the rows that hold members (made once per membership)."""
        key = (id(tensors), self.n_members)
        if key not in self._views:
            self._views[key] = [tensor[: self.n_members] for tensor in tensors]
        return self._views[key]

    def _row_tensors(self) -> list[torch.Tensor]:
        return [
            *self._weights,
            *self._biases,
            *self._sgd_lr,
            *self._adam_lr,
            *self._exp_avg,
            *self._exp_avg_sq,
            self._is_adam,
            self._adam_steps,
        ]

    def _clear_row(self, row: int) -> None:
        for tensor in self._row_tensors():
            tensor[row] = 0.0

    def _corners(self, widths: tuple[int, ...]) -> list[tuple[int, int]]:
        """The (rows, columns) each layer of the stack gives a member of hidden ``widths``;
        ``(0, 0)`` for a pass-through layer."""
        depth = len(widths)
        corners = [(widths[0], 1)]
        for layer in range(1, len(self.padded_widths)):
            corners.append((widths[layer], widths[layer - 1]) if layer < depth else (0, 0))
        corners.append((1, widths[-1]))
        return corners

    def _write_row(
        self, row: int, model: nn.Sequential, rates: list[torch.Tensor], lr: float
    ) -> None:
        widths = tuple(hidden_widths_of(model))
        linears = iter(layer for layer in model if isinstance(layer, nn.Linear))
        n_layers = len(self._weights)
        with torch.no_grad():
            for layer, (rows, columns) in enumerate(self._corners(widths)):
                if rows == 0:
                    identity = torch.eye(widths[-1])
                    self._weights[layer][row, : widths[-1], : widths[-1]] = identity
                    continue
                linear = next(linears)
                self._weights[layer][row, :rows, :columns] = linear.weight
                self._biases[layer][row, :rows, 0] = linear.bias
                rates[layer][row, :rows, :columns] = lr
                rates[n_layers + layer][row, :rows] = lr

    def stacked_layers(self, member_id: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's (weight, bias) of member ``member_id`` including its padding, as the
        stack holds them (for inspection; not a copy)."""
        row = self._rows.index(member_id)
        return [(w[row], b[row]) for w, b in zip(self._weights, self._biases, strict=True)]
