"""One declaration per learning rule: its channel's topology, what it reads, its closed-form cost.

A rule's name (:class:`Rule`, what a config says, re-exported by :mod:`lpfa.config`) and its
facts live here, once, in :data:`RULES`, and everything else asks this table:

- :mod:`lpfa.channel` builds the channel's connections from :func:`sources` and delivers through
  the function named by :attr:`RuleSpec.delivery`;
- :class:`Rule` takes its aliases (``fa``, ``dfa``, …) and :attr:`Rule.has_random_feedback`
  from the table;
- ``hwmodels`` compares the channel operations it *counts* in a traced step with
  :attr:`RuleSpec.closed_form`, and ``lpfa audit --rules`` offers :attr:`RuleSpec.variants`.

The declared :attr:`RuleSpec.weight_transport` is documentation, not evidence: the audit decides
locality only from what the traced step read (a test checks that the two agree for every rule).

Adding a rule: its name in :class:`Rule` and one :class:`RuleSpec` in :data:`RULES`, both in
this file; a new way of delivering the error is one more :class:`Delivery` and its function in
:mod:`lpfa.channel`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lpfa.names import _Named

if TYPE_CHECKING:  # config imports this module: the channel config is only annotated here
    from lpfa.config import ChannelConfig

__all__ = [
    "RULES",
    "Carries",
    "Connections",
    "Delivery",
    "Rule",
    "RuleSpec",
    "aliases",
    "dense_connections",
    "edge_macs",
    "sources",
    "spec",
]


class Rule(_Named):
    """How the output error reaches the hidden layers (the learning channel's topology).

    Baldi et al. (2018) §2-3 and Lillicrap et al. (2016):

    - ``bp``: through the transposed forward weights, layer by layer (weight transport).
    - ``rbp`` (FA): layer by layer through fixed random matrices C^{h+1}.
    - ``srbp`` (DFA): the output error straight to each hidden layer h through its own C^h.
    - ``sbp``: skipped, through the product of the transposed forward matrices above h, with no
      f′ of the layers above (weight transport).
    - ``mixed``: long-range (skip) connections to the hidden layers in ``skip_layers``, a
      short-range chain (as ``rbp``) to the others.
    - ``cascade``: every layer above h sends to h through its own matrix; the signals add.
    - ``pbp``: pseudobackprop, Δh = (W^{h+1})⁺ R^{h+1} (Lillicrap et al. Suppl. Proof 2;
      reads the forward weights, so non-local).
    - ``node_perturbation``: hidden pre-activations are perturbed by N(0, σ²) noise and a single
      scalar, the change of each example's loss, is broadcast back (the reinforcement-learning
      baseline of Lillicrap et al. Fig. 1d).
    - ``top``: only the top layer learns.
    - ``drtp``: direct random target projection (Frenkel, Lefebvre & Bol 2021): the *target* T,
      not the error, straight to each hidden layer h through a fixed random C^h; the hidden
      signal does not depend on the output of the current pass.

    Other rules of the literature are settings of these topologies (:attr:`RuleSpec.variants`):
    sign symmetry (uSF, frSF, brSF: ``rbp`` with ``congruent`` and ``track_signs`` or
    ``resample``), Kolen-Pollack (``rbp`` with ``adapt_lr = 1`` and equal ``feedback_decay`` and
    ``train.weight_decay``), direct Kolen-Pollack (the same on ``srbp``), weight mirror (``rbp``
    with ``mirror_ratio``), sign-DFA (``srbp`` with ``error_signal = sign``), binary DFA
    (``srbp`` with ``feedback = sign``) and low-rank feedback (``feedback_rank``).

    The top layer always follows the gradient (Baldi et al. Fact 1).
    """

    BP = "bp"
    RBP = "rbp"
    SRBP = "srbp"
    SBP = "sbp"
    MIXED = "mixed"
    CASCADE = "cascade"
    PBP = "pbp"
    NODE_PERTURBATION = "node_perturbation"
    TOP = "top"
    DRTP = "drtp"

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return aliases()

    @property
    def has_random_feedback(self) -> bool:
        """True for the rules whose channel is made of random feedback arrays
        (:attr:`RuleSpec.random_feedback`)."""
        return spec(self).random_feedback


class Carries(enum.StrEnum):
    """What a long-range (skip) connection from the output carries."""

    ERROR = "error"
    """The output error e = T − O^L (and a chain from the output carries −∂E/∂S^L)."""
    TARGET = "target"
    """The target T itself (DRTP): every connection from the output carries T."""


class Delivery(enum.StrEnum):
    """How the channel computes J^h, what hidden layer h receives (one function each in
    :class:`lpfa.channel.Channel`)."""

    TRANSPORT = "transport"
    """Σ_k W^kᵀ signal_k: the forward arrays read backwards (``Crossbar.transport``)."""
    PSEUDO_INVERSE = "pseudo_inverse"
    """Σ_k (W^k)⁺ signal_k: the pseudo-inverse of the forward arrays."""
    FEEDBACK = "feedback"
    """Σ_k C^{k→h} signal_k: the channel's own random feedback arrays."""
    PERTURBATION = "perturbation"
    """A broadcast scalar (the change of each example's loss) times the unit's own noise."""
    NONE = "none"
    """Nothing: the hidden layers do not learn."""


# --- topologies: for hidden layer h of L arrays, the layers k > h that send to it -----------------


def _chain(h: int, L: int, cfg: ChannelConfig) -> list[int]:
    return [h + 1]


def _skip(h: int, L: int, cfg: ChannelConfig) -> list[int]:
    return [L]


def _mixed(h: int, L: int, cfg: ChannelConfig) -> list[int]:
    return [L] if h in cfg.skip_layers else [h + 1]


def _all_above(h: int, L: int, cfg: ChannelConfig) -> list[int]:
    return list(range(h + 1, L + 1))


def _nobody(h: int, L: int, cfg: ChannelConfig) -> list[int]:
    return []


# --- closed forms, written from the papers (not from the topologies above) --------------------


def edge_macs(n_src: int, n_dst: int, cfg: ChannelConfig | None = None) -> int:
    """Multiply-accumulates per example of one connection n_src → n_dst: n_src·n_dst for a dense
    array, r·(n_src + n_dst) for low-rank feedback C = QP read as two products through r relay
    units (``feedback_rank`` r < min(n_src, n_dst); a larger rank is stored dense)."""
    r = getattr(cfg, "feedback_rank", None)
    if r is not None and r < min(n_src, n_dst):
        return r * (n_src + n_dst)
    return n_src * n_dst


Connections = Callable[[int, int], int]
"""``macs(k, h)``: multiply-accumulates per example of the channel's connection from layer k to
layer h (what a closed form sums; :func:`dense_connections` unless a conv layer says otherwise)."""


def dense_connections(N: Sequence[int], cfg: ChannelConfig | None = None) -> Connections:
    """Every connection k → h a dense array: :func:`edge_macs` (N_k, N_h)."""
    return lambda k, h: edge_macs(N[k], N[h], cfg)


def _eq14_hidden(N: Sequence[int], cfg: ChannelConfig, macs: Connections | None = None) -> int:
    macs = macs or dense_connections(N, cfg)
    return sum(macs(h + 1, h) for h in range(1, len(N) - 1))


def _eq15(N: Sequence[int], cfg: ChannelConfig, macs: Connections | None = None) -> int:
    macs = macs or dense_connections(N, cfg)
    L = len(N) - 1
    return sum(macs(L, h) for h in range(1, L))


def _mixed_cost(N: Sequence[int], cfg: ChannelConfig, macs: Connections | None = None) -> int:
    macs = macs or dense_connections(N, cfg)
    L = len(N) - 1
    return sum(macs(L, h) if h in cfg.skip_layers else macs(h + 1, h) for h in range(1, L))


def _cascade_cost(N: Sequence[int], cfg: ChannelConfig, macs: Connections | None = None) -> int:
    macs = macs or dense_connections(N, cfg)
    L = len(N) - 1
    return sum(macs(k, h) for h in range(1, L) for k in range(h + 1, L + 1))


def _no_reads(N: Sequence[int], cfg: ChannelConfig, macs: Connections | None = None) -> int:
    return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleSpec:
    """The facts of one learning rule."""

    rule: Rule
    senders: Callable[[int, int, ChannelConfig], list[int]]
    """``senders(h, L, cfg)``: the layers k > h whose signal reaches hidden layer h (k = L is
    the output: a long-range connection carries the output error e, a short-range one R^k)."""
    delivery: Delivery
    """How what is sent becomes J^h."""
    random_feedback: bool
    """The channel is made of its own random arrays C^{k→h} (what ``feedback``, ``sparse``,
    ``congruent``, ``resample``, ``adapt_lr`` … apply to)."""
    weight_transport: bool
    """The rule reads the forward weights (declared; the audit observes it independently)."""
    relays_derivative: bool = True
    """A layer passes on R^h = J^h ∘ f′ (True), or J^h without its f′ (``sbp``)."""
    carries: Carries = Carries.ERROR
    """What the connections from the output carry: the error, or the target (``drtp``)."""
    closed_form: Callable[..., int]
    """``closed_form(sizes, cfg, macs=None)``: channel multiply-accumulates per example, N_0 … N_L
    the layer sizes (Baldi et al. 2018 §3.1), summed over the rule's connections k → h, each
    costing ``macs(k, h)`` (:data:`Connections`; default :func:`dense_connections`, a conv net
    passes its kernel banks') — a comparison for the counted MACs."""
    formula: str
    """The closed form in words, for reports."""
    aliases: tuple[str, ...] = ()
    """Other names a config or the command line accepts for the rule."""
    variants: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Named settings for ``lpfa audit --rules``: label -> overrides besides ``channel.rule``
    (default: the rule's own name with none)."""

    def settings(self) -> dict[str, list[str]]:
        """The ``--rules`` labels of this rule with their full ``section.field=value`` lists."""
        named = self.variants or {self.rule.value: ()}
        return {k: [f"channel.rule={self.rule.value}", *v] for k, v in named.items()}


_EQ14 = "Σ_{h=1}^{L−1} N_h N_{h+1} (eq. 14)"
_EQ15 = "N_L Σ_{h=1}^{L−1} N_h (eq. 15)"
_RANK = "; rank r: r(N_k + N_h) per connection"

# Named settings of the rules that are configurations of a topology (see Rule's docstring);
# the magnitudes of ±s feedback (uSF, BDFA) are s = 0.1, about the Glorot-normal standard
# deviation of the 100-unit Baldi net's feedback they replace (sqrt(2/200) to sqrt(2/110)).
_SIGN_SYMMETRY = {
    "usf": ("channel.congruent=true", "channel.track_signs=true", "channel.feedback=sign",
            "channel.feedback_scale=0.1"),
    "frsf": ("channel.congruent=true", "channel.track_signs=true"),
    "brsf": ("channel.congruent=true", "channel.resample=true"),
}  # fmt: skip
_KP_DECAY = 1e-3  # λ of Kolen-Pollack on both arrays, per update, times η_t
_KOLEN_POLLACK = (
    "channel.adapt_lr=1.0",
    f"channel.feedback_decay={_KP_DECAY}",
    f"train.weight_decay={_KP_DECAY}",
)

RULES: dict[Rule, RuleSpec] = {
    s.rule: s
    for s in (
        RuleSpec(
            rule=Rule.BP,
            senders=_chain,
            delivery=Delivery.TRANSPORT,
            random_feedback=False,
            weight_transport=True,
            closed_form=_eq14_hidden,
            formula=_EQ14,
            aliases=("backprop",),
        ),
        RuleSpec(
            rule=Rule.RBP,
            senders=_chain,
            delivery=Delivery.FEEDBACK,
            random_feedback=True,
            weight_transport=False,
            closed_form=_eq14_hidden,
            formula=_EQ14 + _RANK,
            aliases=("fa",),
            variants={
                "rbp": (),
                "arbp": ("channel.adapt_lr=0.1",),
                **_SIGN_SYMMETRY,
                "kp": _KOLEN_POLLACK,
                "wm": (
                    "channel.mirror_ratio=1.0",
                    "channel.adapt_lr=0.1",
                    "channel.feedback_decay=0.1",
                ),
                "lowrank_rbp": ("channel.feedback_rank=2",),
            },
        ),
        RuleSpec(
            rule=Rule.SRBP,
            senders=_skip,
            delivery=Delivery.FEEDBACK,
            random_feedback=True,
            weight_transport=False,
            closed_form=_eq15,
            formula=_EQ15 + _RANK,
            aliases=("dfa",),
            variants={
                "srbp": (),
                "asrbp": ("channel.adapt_lr=1.0",),
                "dkp": _KOLEN_POLLACK,
                "sdfa": ("channel.error_signal=sign",),
                "bdfa": ("channel.feedback=sign", "channel.feedback_scale=0.1"),
                "lowrank_srbp": ("channel.feedback_rank=2",),
            },
        ),
        RuleSpec(
            rule=Rule.SBP,
            senders=_chain,
            delivery=Delivery.TRANSPORT,
            random_feedback=False,
            weight_transport=True,
            relays_derivative=False,
            closed_form=_eq14_hidden,
            formula=_EQ14,
        ),
        RuleSpec(
            rule=Rule.MIXED,
            senders=_mixed,
            delivery=Delivery.FEEDBACK,
            random_feedback=True,
            weight_transport=False,
            closed_form=_mixed_cost,
            formula="Σ_h (N_L N_h if h skips, else N_{h+1} N_h)",
            variants={"mixed": ("channel.skip_layers=[1]",)},
        ),
        RuleSpec(
            rule=Rule.CASCADE,
            senders=_all_above,
            delivery=Delivery.FEEDBACK,
            random_feedback=True,
            weight_transport=False,
            closed_form=_cascade_cost,
            formula="Σ_h Σ_{k>h} N_k N_h",
        ),
        RuleSpec(
            rule=Rule.PBP,
            senders=_chain,
            delivery=Delivery.PSEUDO_INVERSE,
            random_feedback=False,
            weight_transport=True,
            closed_form=_eq14_hidden,
            formula=_EQ14,
            aliases=("pseudobackprop",),
        ),
        RuleSpec(
            rule=Rule.NODE_PERTURBATION,
            senders=_nobody,
            delivery=Delivery.PERTURBATION,
            random_feedback=False,
            weight_transport=False,
            closed_form=_no_reads,
            formula="no channel reads",
            aliases=("np",),
        ),
        RuleSpec(
            rule=Rule.TOP,
            senders=_nobody,
            delivery=Delivery.NONE,
            random_feedback=False,
            weight_transport=False,
            closed_form=_no_reads,
            formula="no channel reads",
            aliases=("top_layer_only",),
        ),
        RuleSpec(
            rule=Rule.DRTP,
            senders=_skip,
            delivery=Delivery.FEEDBACK,
            random_feedback=True,
            weight_transport=False,
            carries=Carries.TARGET,
            closed_form=_eq15,
            formula=_EQ15 + _RANK,
        ),
    )
}


def spec(rule: Rule | str) -> RuleSpec:
    """The declaration of ``rule`` (a :class:`~lpfa.config.Rule` or its value)."""
    return RULES[Rule(rule)]


def sources(cfg: ChannelConfig, n_layers: int) -> list[list[int]]:
    """For each hidden layer h = 1 … L−1 (list index h−1), the layers k > h that send to it.

    k = L is the output layer. ``top`` and ``node_perturbation`` send nothing.
    """
    senders = spec(cfg.rule).senders
    return [senders(h, n_layers, cfg) for h in range(1, n_layers)]


def aliases() -> dict[str, str]:
    """Every alias of every rule: alias -> the rule's value."""
    return {a: s.rule.value for s in RULES.values() for a in s.aliases}
