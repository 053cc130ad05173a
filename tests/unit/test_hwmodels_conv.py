"""The audit of conv nets: the closed form of the channel's MACs through kernel banks equals the
count of the traced step, feedback synapses are the kernel banks' entries (not the Toeplitz
matrix's), kernel-bank reads are wired on the floorplan, and the network is named by its
layers."""

import numpy as np
import pytest

from hwmodels import cost
from hwmodels.audit import audit, describe_network, format_table, variant
from hwmodels.cost import bank_receivers, channel_closed_form, connection_macs
from hwmodels.layout import Floorplan
from lpfa import config as C
from lpfa.conv import geometry, im2col
from lpfa.network import Network

FASHION = "configs/conv_fashion_mnist.toml"
# the Fashion-MNIST net made small: 1×28×28 → conv3·2 → pool2 → 2×14×14 → conv3/2·3 (valid) →
# 3×6×6, no pool → conv2·2 (p1) → overlapping pool 3/2 (same) → 2×4×4 = 32 → 5 → 10
SMALL = [
    "model.conv=[{channels=2, kernel=3, pool_kernel=2},"
    " {channels=3, kernel=3, stride=2, padding='valid'},"
    " {channels=2, kernel=2, padding=1, pool_kernel=3, pool_stride=2, pool_padding='same'}]",
    "model.sizes=[32, 5, 10]",
    "train.batch_size=4",
]


def tiny(conv, sizes, rule: str = "bp") -> C.RunConfig:
    """A conv net on 1×6×6 inputs of the linear teacher, batch 4."""
    return C.RunConfig(
        seeds=(0,),
        data=C.DataConfig(name="linear-teacher", n_train=16, n_test=4),
        model=C.ModelConfig(input_shape=(1, 6, 6), conv=conv, sizes=sizes, dtype="float64"),
        channel=C.ChannelConfig(rule=C.Rule(rule)),
        train=C.TrainConfig(epochs=1, batch_size=4, lr=0.1),
    )


ONE_CONV = (C.ConvLayerConfig(channels=2, kernel=3, pool_kernel=2),)


def two_conv(kernel: int, stride: int) -> tuple:
    """conv3·2 → pool2 (2×3×3), then a bank of 3 kernels of kernel × kernel, valid."""
    second = C.ConvLayerConfig(channels=3, kernel=kernel, stride=stride, padding="valid")
    return (*ONE_CONV, second)


RULES = {
    "bp": ["channel.rule=bp"],
    "rbp": ["channel.rule=rbp"],
    "srbp": ["channel.rule=srbp"],
    "top": ["channel.rule=top"],
    "drtp": ["channel.rule=drtp"],
    "mixed": ["channel.rule=mixed", "channel.skip_layers=[2]"],  # conv 1 hears conv 2's bank
    "arbp": ["channel.rule=rbp", "channel.adapt_lr=0.1"],
}


@pytest.mark.parametrize("rule", list(RULES))
def test_the_closed_form_equals_the_traced_count_through_conv_layers(rule):
    cfg = C.load(FASHION, SMALL + RULES[rule])
    a = audit(cfg, source="random")
    assert a.closed_form_ok, (a.channel_macs_per_example, a.closed_form)
    assert "not placed on the floorplan" not in " ".join(a.notes)


def test_the_fashion_mnist_net_as_configured_holds_its_closed_form():
    cfg = C.load(FASHION, ["train.batch_size=2"])
    for rule in ("bp", "rbp", "srbp"):
        a = audit(variant(cfg, [f"channel.rule={rule}"]), source="random")
        assert a.closed_form_ok, (rule, a.channel_macs_per_example, a.closed_form)
    # BP: W2 (32 × 16·25) read back at the 14·14 positions of conv 2, then 100·1568 and 10·100;
    # the dense formula would have put 1568·3136 where the kernel bank is
    assert a.closed_form == 10 * (3136 + 1568 + 100)
    bp = channel_closed_form(cfg.channel, cfg.model.layer_sizes, cfg.model)[0]
    assert bp == 32 * 16 * 25 * 14 * 14 + 100 * 1568 + 10 * 100
    assert channel_closed_form(cfg.channel, cfg.model.layer_sizes)[0] != bp


def test_one_conv_layer_by_hand():
    # 1×6×6 → conv3·2 (same) → pool2 → 2×3×3 = 18 → 4 → 3: the input gets no error, so no
    # kernel bank is read back; the forward pass reads the bank at all 36 positions
    cfg = tiny(ONE_CONV, (18, 4, 3))
    a = audit(cfg, source="random")
    assert a.sizes == (36, 18, 4, 3)
    assert a.ops["forward"]["macs"] == (2 * 9 * 36 + 4 * 18 + 3 * 4) * 4
    assert a.channel_macs_per_example == a.closed_form == 3 * 4 + 4 * 18
    s = audit(variant(cfg, ["channel.rule=srbp"]), source="random")
    assert s.channel_macs_per_example == s.closed_form == 3 * (18 + 4)
    assert s.channel.synapses == 3 * (18 + 4)


@pytest.mark.parametrize(
    ("kernel", "stride", "bank_macs", "receivers"),
    [
        (2, 1, 3 * (2 * 2 * 2) * (2 * 2), 18),  # 2×2 positions; every unit of 2×3×3 is read
        (1, 2, 3 * (2 * 1 * 1) * (2 * 2), 2 * 4),  # 1×1 at stride 2 reads rows/columns 0 and 2
    ],
)
def test_two_conv_layers_by_hand(kernel, stride, bank_macs, receivers):
    # 1×6×6 → conv3·2 → pool2 → 2×3×3 (18) → conv{kernel}/{stride}·3 (valid) → 3×2×2 (12) → 4 → 3
    cfg = tiny(two_conv(kernel, stride), (12, 4, 3))
    taps = 2 * kernel**2
    fp = Floorplan(unit_pitch_mm=0.0)
    bp = audit(cfg, source="random", floorplan=fp)
    assert bp.channel_macs_per_example == bp.closed_form == bank_macs + 4 * 12 + 3 * 4
    assert connection_macs(cfg.model)(2, 1) == bank_macs
    rbp = audit(variant(cfg, ["channel.rule=rbp"]), source="random", floorplan=fp)
    assert rbp.channel_macs_per_example == rbp.closed_form == bp.closed_form
    srbp = audit(variant(cfg, ["channel.rule=srbp"]), source="random")
    assert srbp.channel_macs_per_example == srbp.closed_form == 3 * (18 + 12 + 4)
    for a, name in ((bp, "W2ᵀ→1"), (rbp, "C2→1")):
        # the bank's 3 × taps entries, not the 12 × 18 Toeplitz matrix's non-zeros
        assert a.channel.synapses_by_edge[name] == 3 * taps
        # one wire per unit of layer 1 some position reaches, one pitch long (chained)
        assert a.channel.wires_by_edge[name] == receivers
        assert a.channel.wires == receivers + 12 + 4
        assert set(a.channel.wire_lengths_mm) == {1.0}
        assert a.channel.messages == 4 * a.channel.wires  # tanh: every error is non-zero
        assert not any("not placed" in n for n in a.notes)


def test_feedback_synapses_are_the_kernel_banks_not_the_toeplitz_matrix():
    cfg = C.load(FASHION, [*SMALL, "channel.rule=rbp"])
    net = Network.build(cfg, np)
    a = audit(cfg, source="random")
    banks = {f"C{k}→{h}": fb.C[0].size for (k, h), fb in net.channel.feedback.items()}
    assert a.channel.synapses_by_edge == banks
    # kernel banks C^{2→1} (3 × 2·9) and C^{3→2} (2 × 3·4); dense 5 × 32 and 10 × 5 above them
    assert banks == {"C2→1": 3 * 18, "C3→2": 2 * 12, "C4→3": 5 * 32, "C5→4": 10 * 5}
    bp = audit(variant(cfg, ["channel.rule=bp"]), source="random")
    assert bp.channel.synapses == sum(L.W[0].size for L in net.layers[1:])


def test_bank_receivers_are_the_toeplitz_matrix_non_zero_columns():
    rng = np.random.default_rng(0)
    for shape, k, s, pad in (
        ((2, 5, 5), 3, 2, "valid"),
        ((3, 4, 4), 2, 1, 1),
        ((1, 7, 7), 1, 3, 0),
    ):
        g = geometry(shape, k, s, pad)
        cols = rng.random(g.taps) < 0.5
        n = int(np.prod(shape))
        # the Toeplitz matrix, unit by unit: which patch entries a one-hot input lands in
        patches = np.stack([im2col(np.eye(n)[i].reshape(1, *shape), g) for i in range(n)])
        toeplitz = (patches[:, cols, :] != 0).any(axis=(1, 2))
        assert np.array_equal(bank_receivers(cols, g), toeplitz)


def test_a_changed_closed_form_is_caught(monkeypatch):
    cfg = C.load(FASHION, [*SMALL, "channel.rule=rbp"])
    assert audit(cfg, source="random").closed_form_ok
    real = cost.connection_macs

    def omit_the_lowest_bank(model, channel=None):
        macs = real(model, channel)
        return lambda k, h: 0 if (k, h) == (2, 1) else macs(k, h)

    monkeypatch.setattr(cost, "connection_macs", omit_the_lowest_bank)
    a = audit(cfg, source="random")
    assert a.closed_form_ok is False
    assert a.channel_macs_per_example - a.closed_form == 3 * 18 * 6 * 6
    assert f"≠{a.closed_form}" in format_table([a])


def test_the_network_is_described_by_its_layers():
    fashion = C.load(FASHION)
    assert describe_network(fashion.model) == (
        "1×28×28 → conv5·16 → pool2 → conv5·32 → pool2 → 100 → 10"
    )
    small = C.load(FASHION, SMALL)
    assert describe_network(small.model) == (
        "1×28×28 → conv3·2 → pool2 → conv3/2·3(valid) → conv2·2(p1) → pool3/2(same) → 5 → 10"
    )
    cifar = C.load("configs/baldi2018_cifar10.toml")
    assert describe_network(cifar.model).count("conv5·64 → pool3/2(same)") == 3
    dense = C.load("configs/conv_fashion_mnist.toml", ["model.conv=[]", "model.sizes=[784, 10]"])
    assert describe_network(dense.model) == "784-10"
    a = audit(variant(small, ["train.batch_size=2"]), source="random")
    assert a.network == describe_network(small.model)
    assert f"network {a.network}," in format_table([a])
    assert a.to_dict()["network"] == a.network


def test_a_dropped_conv_unit_receives_no_message():
    # channel dropout acts at the conv units before the pool: a pooled unit whose maximum was
    # dropped is sent nothing for that example (nor is a unit whose every window position saw
    # no error: conv 3's units that are no maximum of the overlapping pool, and below them)
    cfg = C.load(FASHION, [*SMALL, "channel.rule=rbp", "train.batch_size=20"])
    full = audit(cfg, source="random").channel
    dropped = audit(variant(cfg, ["channel.dropout=0.5"]), source="random").channel
    assert full.messages <= 20 * full.wires
    assert dropped.wires == full.wires
    assert 0.3 * full.messages < dropped.messages < 0.7 * full.messages
