"""Figures printed in the paper that the package itself needs (see docs/published.md)."""

# (model, task, units) -> the parameter count as the paper prints it. For noise-padded
# CIFAR-10 the paper prints the m = 3 counts, though m = 96 makes the models larger.
PAPER_PARAMETERS: dict[tuple[str, str, int], str] = {
    **{
        (model, task, units): figure
        for task in ("mnist", "pmnist")
        for model, units, figure in (
            ("antisymmetric", 128, "10k"),
            ("antisymmetric_gated", 128, "10k"),
            ("lstm", 128, "68k"),
        )
    },
    **{
        (model, task, units): figure
        for task in ("cifar10", "noisy_cifar10")
        for model, units, figure in (
            ("antisymmetric", 256, "36k"),
            ("antisymmetric_gated", 256, "37k"),
            ("ablation", 196, "42k"),
            ("lstm", 128, "69k"),
        )
    },
}
