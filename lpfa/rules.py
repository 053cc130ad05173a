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
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lpfa.names import _Named

if TYPE_CHECKING:  # config imports this module: the channel config is only annotated here
    from lpfa.config import ChannelConfig

__all__ = ["RULES", "Delivery", "Rule", "RuleSpec", "aliases", "sources", "spec"]


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

    @classmethod
    def _aliases(cls) -> dict[str, str]:
        return aliases()

    @property
    def has_random_feedback(self) -> bool:
        """True for the rules whose channel is made of random feedback arrays
        (:attr:`RuleSpec.random_feedback`)."""
        return spec(self).random_feedback


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


def _eq14_hidden(N: Sequence[int], cfg: ChannelConfig) -> int:
    return sum(a * b for a, b in itertools.pairwise(N[1:]))


def _eq15(N: Sequence[int], cfg: ChannelConfig) -> int:
    return N[-1] * sum(N[1:-1])


def _mixed_cost(N: Sequence[int], cfg: ChannelConfig) -> int:
    L = len(N) - 1
    return sum(N[L] * N[h] if h in cfg.skip_layers else N[h + 1] * N[h] for h in range(1, L))


def _cascade_cost(N: Sequence[int], cfg: ChannelConfig) -> int:
    L = len(N) - 1
    return sum(N[h] * sum(N[h + 1 :]) for h in range(1, L))


def _no_reads(N: Sequence[int], cfg: ChannelConfig) -> int:
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
    closed_form: Callable[[Sequence[int], ChannelConfig], int]
    """``closed_form(sizes, cfg)``: channel multiply-accumulates per example of a dense channel,
    N_0 … N_L the layer sizes (Baldi et al. 2018 §3.1) — a comparison for the counted MACs."""
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
            formula=_EQ14,
            aliases=("fa",),
            variants={"rbp": (), "arbp": ("channel.adapt_lr=0.1",)},
        ),
        RuleSpec(
            rule=Rule.SRBP,
            senders=_skip,
            delivery=Delivery.FEEDBACK,
            random_feedback=True,
            weight_transport=False,
            closed_form=_eq15,
            formula="N_L Σ_{h=1}^{L−1} N_h (eq. 15)",
            aliases=("dfa",),
            variants={"srbp": (), "asrbp": ("channel.adapt_lr=1.0",)},
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
