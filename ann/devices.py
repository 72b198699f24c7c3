"""Choosing the torch device: ``auto`` means CUDA, then MPS, then the CPU."""

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceUnavailableError(RuntimeError):
    """The requested device does not exist on this machine."""


def mps_available() -> bool:
    """Whether Apple's Metal backend can run here."""
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def resolve_device(name: str) -> torch.device:
    """Turn a device name from :data:`DEVICE_CHOICES` into a usable ``torch.device``.

    Raises:
        ValueError: ``name`` is not one of the choices.
        DeviceUnavailableError: ``cuda`` or ``mps`` was asked for and is not present.
    """
    if name not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            "--device cuda was given but this torch build sees no CUDA GPU; "
            "use --device cpu (or auto), or install a CUDA build of torch"
        )
    if name == "mps" and not mps_available():
        raise DeviceUnavailableError(
            "--device mps was given but Metal is not available here; use --device cpu (or auto)"
        )
    return torch.device(name)
