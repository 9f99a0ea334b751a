"""Known optimizers written as rules, with the constants of their papers and of torch.optim.

A rule is the update direction d; the step is w <- w - lr * (d + weight_decay * w). So adamw is
adam with weight decay, and the learning rate is never part of the rule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownRule:
    """A published optimizer as a rule: its name, rule text, where it comes from, a note."""

    name: str
    rule: str
    source: str
    note: str = ""


# Lion updates its momentum *after* taking the sign. Our state buffers are updated before the
# rule reads them (torch.optim's convention), so with m_t = b2*m_{t-1} + (1-b2)*g:
#   b1*m_{t-1} + (1-b1)*g = (1-a)*m_t + a*g   with a = 1 - b1/b2.
_LION_A = 1.0 - 0.9 / 0.99
# torch.optim.SGD's momentum buffer is b*buf + g; nesterov steps along g + b*buf.
KNOWN_RULES: dict[str, KnownRule] = {
    r.name: r
    for r in (
        KnownRule("sgd", "g", "Robbins & Monro 1951; torch.optim.SGD"),
        KnownRule(
            "momentum",
            "mom(g, 0.9)",
            "Polyak 1964; torch.optim.SGD(momentum=0.9)",
        ),
        KnownRule(
            "nesterov",
            "add(g, mul(mom(g, 0.9), 0.9))",
            "Nesterov 1983; torch.optim.SGD(momentum=0.9, nesterov=True)",
        ),
        KnownRule(
            "adam",
            "div(ema_bc(g, 0.9), add(sqrt(ema_bc(square(g), 0.999)), 1e-08))",
            "Kingma & Ba 2015; torch.optim.Adam defaults",
            "adamw is this rule with weight decay (decoupled, Loshchilov & Hutter 2019)",
        ),
        KnownRule(
            "rmsprop",
            "div(g, add(sqrt(ema(square(g), 0.99)), 1e-08))",
            "Tieleman & Hinton 2012; torch.optim.RMSprop defaults (alpha 0.99, eps 1e-8)",
        ),
        KnownRule(
            "adagrad",
            "div(g, add(sqrt(mom(square(g), 1.0)), 1e-10))",
            "Duchi et al. 2011; torch.optim.Adagrad defaults (eps 1e-10)",
        ),
        KnownRule("signsgd", "sign(g)", "Bernstein et al. 2018, signSGD"),
        KnownRule("signum", "sign(ema(g, 0.9))", "Bernstein et al. 2018, Signum (momentum 0.9)"),
        KnownRule(
            "lion",
            f"sign(interp(ema(g, 0.99), g, {_LION_A!r}))",
            "Chen et al. 2023, Symbolic Discovery of Optimization Algorithms, Algorithm 2 "
            "(b1 0.9, b2 0.99)",
        ),
        KnownRule(
            "powersign",
            "mul(exp(mul(sign(g), sign(ema(g, 0.9)))), g)",
            "Bello et al. 2017, Neural Optimizer Search (PowerSign, base e)",
        ),
        KnownRule(
            "addsign",
            "mul(add(1.0, mul(sign(g), sign(ema(g, 0.9)))), g)",
            "Bello et al. 2017, Neural Optimizer Search (AddSign, alpha 1)",
        ),
        KnownRule(
            "evo2025",
            "add(mul(sign(g), 0.7345), "
            "mul(div(ema(g, 0.8553), add(sqrt(ema(square(g), 0.9358)), 5.4e-09)), 3.6352))",
            "Marfinetz 2025, Evolving Deep Learning Optimizers (arXiv 2512.11853), the evolved "
            "optimizer: d = 0.7345 sign(g) + 3.6352 m / (sqrt(v) + 5.4e-9), m and v plain EMAs "
            "of g and g^2 (b1 0.8553, b2 0.9358, no bias correction)",
            "the paper's lr warmup and cosine decay are the training schedule, outside the rule",
        ),
        KnownRule(
            "adabelief",
            "div(ema_bc(g, 0.9), add(sqrt(ema_bc(square(sub(g, ema(g, 0.9))), 0.999)), 1e-08))",
            "Zhuang et al. 2020, AdaBelief (without the eps inside the second moment)",
        ),
    )
}


def resolve(rule_or_name: str) -> str:
    """A known name's rule text, or the text itself (validated by the caller's parse)."""
    key = rule_or_name.strip()
    if key in KNOWN_RULES:
        return KNOWN_RULES[key].rule
    return rule_or_name


__all__ = ["KNOWN_RULES", "KnownRule", "resolve"]
