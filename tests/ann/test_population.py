"""The population trainer computes, member by member, what the one-network loop computes.

The equivalence tests run in float64. In float32 the two engines agree to the last bit or two
per epoch, but training under L1 loss is chaotic: the one-network loop itself, fed the same
points in another order, drifts by about 2% (SGD) to 20% (Adam) within 1,000 epochs, so float32
runs cannot be compared at 1e-4 over that span. In float64 the same drift stays near 1e-12.
"""

import math

import pytest
import torch

from ann.data import QuadraticData, make_data
from ann.model import TUTORIAL_WIDTHS, build_mlp
from ann.population import MemberReport, Population, padded_widths_for
from ann.training import Report, train

CPU = torch.device("cpu")
EPOCHS = 1000
REPORT_EVERY = 100
TOLERANCE = 1e-4

# The baseline, the shallowest and the deepest networks of the search space, SGD and Adam.
MIXED = [
    (TUTORIAL_WIDTHS, "SGD", 0.002, 11),
    ((8,), "SGD", 0.01, 12),
    ((5, 12, 7, 3), "Adam", 0.01, 13),
    ((16, 4), "Adam", 0.003, 14),
    (TUTORIAL_WIDTHS, "Adam", 0.05, 15),
]


def as_float64(data: QuadraticData) -> QuadraticData:
    return QuadraticData(*(tensor.double() for tensor in vars(data).values()))


@pytest.fixture(scope="module")
def data64() -> QuadraticData:
    return as_float64(make_data(0)[0])


def model_for(widths, seed, dtype=torch.float64) -> torch.nn.Sequential:
    return build_mlp(widths, torch.Generator().manual_seed(seed)).to(dtype)


def eager_reports(data, widths, optimizer, lr, seed, epochs=EPOCHS) -> list[Report]:
    reports: list[Report] = []
    train(
        model_for(widths, seed, data.x.dtype),
        data,
        optimizer_name=optimizer,
        lr=lr,
        epochs=epochs,
        report_every=REPORT_EVERY,
        device=CPU,
        on_report=lambda report: reports.append(report) or False,
    )
    return reports


def run_to_the_end(population: Population) -> dict[int, list[MemberReport]]:
    """Train until every member finished; each member's reports, by member id."""
    reports: dict[int, list[MemberReport]] = {}
    while population.n_members:
        for member_report in population.train_until_report():
            reports.setdefault(member_report.member, []).append(member_report)
            if member_report.finished:
                population.remove(member_report.member)
    return reports


def assert_same_reports(expected: list[Report], got: list[Report]) -> None:
    assert [r.epoch for r in got] == [r.epoch for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.train_l1 == pytest.approx(theirs.train_l1, rel=TOLERANCE)
        assert mine.val_l1 == pytest.approx(theirs.val_l1, rel=TOLERANCE)


def mixed_population(data, size: int = 5) -> Population:
    padded = padded_widths_for([widths for widths, *_ in MIXED])
    return Population(data, size=size, padded_widths=padded, report_every=REPORT_EVERY, device=CPU)


def test_padded_widths_hold_each_layer_and_each_pass_through():
    assert padded_widths_for([(6, 10, 6), (8,), (5, 12, 7, 3)]) == (8, 12, 8, 8)


def test_a_mixed_population_matches_the_one_network_loop_at_every_report(data64):
    population = mixed_population(data64)
    members = [
        population.add(model_for(widths, seed), optimizer_name=optimizer, lr=lr, epochs=EPOCHS)
        for widths, optimizer, lr, seed in MIXED
    ]

    reports = run_to_the_end(population)

    for member, (widths, optimizer, lr, seed) in zip(members, MIXED, strict=True):
        expected = eager_reports(data64, widths, optimizer, lr, seed)
        assert_same_reports(expected, [r.report for r in reports[member]])
        assert [r.finished for r in reports[member]] == [False] * 9 + [True]


def test_members_joining_later_or_moved_to_another_row_follow_their_own_run(data64):
    population = mixed_population(data64, size=2)
    adam_deep, adam_small = MIXED[2], MIXED[3]
    first = population.add(
        model_for(adam_deep[0], adam_deep[3]), optimizer_name="Adam", lr=0.01, epochs=200
    )
    population.train_until_report()
    later = population.add(
        model_for(adam_small[0], adam_small[3]), optimizer_name="Adam", lr=0.01, epochs=300
    )
    population.train_until_report()
    # The first member leaves: the later one moves into row 0, and a third one takes row 1,
    # where it must not inherit the moments of the member that was there.
    population.remove(first)
    third = population.add(
        model_for(adam_small[0], 99), optimizer_name="Adam", lr=0.003, epochs=300
    )

    reports = run_to_the_end(population)

    expected_later = eager_reports(data64, adam_small[0], "Adam", 0.01, adam_small[3], 300)
    assert_same_reports(expected_later[1:], [r.report for r in reports[later]])
    assert_same_reports(
        eager_reports(data64, adam_small[0], "Adam", 0.003, 99, epochs=300),
        [r.report for r in reports[third]],
    )


def test_a_member_model_holds_the_trained_weights_and_padding_never_moves(data64):
    widths, optimizer, lr, seed = MIXED[1]
    population = mixed_population(data64)
    member = population.add(model_for(widths, seed), optimizer_name=optimizer, lr=lr, epochs=200)
    eager = model_for(widths, seed)
    train(eager, data64, optimizer_name=optimizer, lr=lr, epochs=200, report_every=100, device=CPU)

    run_to_the_end_without_removing(population)

    trained = population.member_model(member)
    for mine, theirs in zip(trained.parameters(), eager.parameters(), strict=True):
        assert torch.allclose(mine, theirs, rtol=1e-9, atol=1e-12)
    layers = population.stacked_layers(member)
    # Depth 1 in a stack of depth 4: layers 1 to 3 pass the 8 units through unchanged.
    for weight, bias in layers[1:4]:
        assert torch.equal(weight[:8, :8], torch.eye(8, dtype=torch.float64))
        assert torch.count_nonzero(weight) == 8
        assert torch.count_nonzero(bias) == 0
    assert torch.count_nonzero(layers[0][0][8:]) == 0
    assert torch.count_nonzero(layers[4][0][:, 8:]) == 0


def run_to_the_end_without_removing(population: Population) -> None:
    while not any(r.finished for r in population.train_until_report()):
        pass


def test_a_diverging_member_reports_nan_and_leaves_the_others_alone(data64):
    population = mixed_population(data64, size=2)
    broken = model_for((8,), 1)
    with torch.no_grad():
        broken[0].weight[0, 0] = math.nan
    diverged = population.add(broken, optimizer_name="SGD", lr=0.01, epochs=200)
    widths, optimizer, lr, seed = MIXED[0]
    healthy = population.add(model_for(widths, seed), optimizer_name=optimizer, lr=lr, epochs=200)

    reports = run_to_the_end(population)

    assert all(math.isnan(r.report.train_l1) for r in reports[diverged])
    assert_same_reports(
        eager_reports(data64, widths, optimizer, lr, seed, epochs=200),
        [r.report for r in reports[healthy]],
    )


def test_float32_agrees_with_the_one_network_loop_over_the_first_epochs():
    data = make_data(0)[0]
    population = Population(
        data, size=1, padded_widths=TUTORIAL_WIDTHS, report_every=REPORT_EVERY, device=CPU
    )
    population.add(
        model_for(TUTORIAL_WIDTHS, 3, torch.float32),
        optimizer_name="Adam",
        lr=0.01,
        epochs=REPORT_EVERY,
    )

    [member_report] = population.train_until_report()

    [expected] = eager_reports(data, TUTORIAL_WIDTHS, "Adam", 0.01, 3, epochs=REPORT_EVERY)
    assert member_report.report.val_l1 == pytest.approx(expected.val_l1, rel=1e-3)


def test_in_float32_a_member_runs_the_same_to_the_last_bit_alone_or_among_others():
    data = make_data(0)[0]
    padded = (32, 32, 32, 32)
    runs = []
    for n_others in (0, 5):
        population = Population(data, size=6, padded_widths=padded, report_every=100, device=CPU)
        for seed in range(n_others):
            population.add(
                model_for((20, 30), seed, torch.float32), optimizer_name="SGD", lr=0.01, epochs=50
            )
        member = population.add(
            model_for((5, 12, 7, 3), 2, torch.float32), optimizer_name="Adam", lr=0.01, epochs=300
        )
        runs.append([r.report for r in run_to_the_end(population)[member]])

    assert runs[0] == runs[1]


def test_a_network_too_big_for_the_padding_or_a_full_population_is_refused():
    population = Population(
        make_data(0, n_points=10)[0], size=1, padded_widths=(6,), report_every=1, device=CPU
    )
    with pytest.raises(ValueError, match=r"hidden widths \[6, 10, 6\] does not fit"):
        population.add(model_for(TUTORIAL_WIDTHS, 1), optimizer_name="SGD", lr=0.1, epochs=1)

    population.add(model_for((6,), 1), optimizer_name="SGD", lr=0.1, epochs=1)
    with pytest.raises(ValueError, match=r"the population is full \(1 members\)"):
        population.add(model_for((6,), 1), optimizer_name="SGD", lr=0.1, epochs=1)
    with pytest.raises(ValueError, match="no members"):
        Population(
            make_data(0, n_points=10)[0], size=1, padded_widths=(6,), report_every=1, device=CPU
        ).train_until_report()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_population_on_cuda_matches_the_cpu(data64):
    cuda = torch.device("cuda")
    results = []
    for device in (CPU, cuda):
        population = Population(
            data64, size=1, padded_widths=(8, 12, 8, 8), report_every=100, device=device
        )
        population.add(model_for((5, 12, 7, 3), 2), optimizer_name="Adam", lr=0.01, epochs=300)
        results.append([r.report for r in run_to_the_end(population)[0]])

    assert_same_reports(results[0], results[1])
