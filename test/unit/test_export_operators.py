"""The exported graphs stay inside what TensorRT's ONNX parser takes.

The reference is TensorRT's own published support matrix (onnx-tensorrt, docs/operators.md, for
TensorRT 8.5 and opset 17, the opset the export writes), kept below as data of this test: the
operators marked supported, and the restrictions the matrix states for the ones our graphs use.
It is deliberately not pisr_ros.inference.export's list, which is the code under test.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

onnx = pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]

# Every operator the matrix marks "Y" (supported), TensorRT 8.5, opset <= 17.
TENSORRT_PARSER_OPERATORS = frozenset("""
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil
Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace
DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather
GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
GridSample GRU HardSwish HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu
Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN
RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin
Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh
ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
# Every operator the same matrix marks "N" (not supported).
TENSORRT_PARSER_UNSUPPORTED = frozenset("""
Bernoulli BitShift BlackmanWindow Compress ConcatFromSequence ConvInteger DFT Det
DynamicQuantizeLinear HammingWindow HannWindow Hardmax IsInf LayerNormalization MatMulInteger
MaxRoiPool MaxUnpool MelWeightMatrix Multinomial NegativeLogLikelihoodLoss Optional
OptionalGetElement OptionalHasElement QLinearConv QLinearMatMul STFT SequenceAt SequenceConstruct
SequenceEmpty SequenceErase SequenceInsert SequenceLength SequenceMap SoftmaxCrossEntropyLoss
SplitToSequence StringNormalizer TfIdfVectorizer Unique
""".split())
# The matrix's restrictions "input must be an initializer" (a Constant node's output is one to
# the parser): operator -> the input positions it names.
CONSTANT_INPUTS = {"Conv": (1,), "ConvTranspose": (1,), "TopK": (1,), "Slice": (3,), "Squeeze": (1,),
                   "Unsqueeze": (1,), "CumSum": (1,)}
RESIZE_MODES = {"nearest", "linear"}
RESIZE_COORDINATE_MODES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
RESIZE_NEAREST_MODES = {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"}
MAX_OPSET = 17


def parser_problems(model) -> list[str]:
    """What TensorRT 8.5's parser would refuse in ``model``, by its published matrix."""
    graph = model.graph
    problems = [f"opset {o.version} > {MAX_OPSET}" for o in model.opset_import
                if o.domain in ("", "ai.onnx") and o.version > MAX_OPSET]
    constants = {i.name for i in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    for node in graph.node:
        where = f"{node.op_type} {node.name!r}"
        if node.domain not in ("", "ai.onnx") or node.op_type not in TENSORRT_PARSER_OPERATORS:
            problems.append(f"{where}: not in TensorRT's parser support matrix")
            continue
        for position in CONSTANT_INPUTS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position] and node.input[position] not in constants:
                problems.append(f"{where}: input {position} must be an initializer")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        if node.op_type == "Resize":
            if attrs.get("mode", "nearest") not in RESIZE_MODES:
                problems.append(f"{where}: mode {attrs['mode']}")
            if attrs.get("coordinate_transformation_mode", "half_pixel") not in RESIZE_COORDINATE_MODES:
                problems.append(f"{where}: coordinate_transformation_mode {attrs['coordinate_transformation_mode']}")
            if attrs.get("mode", "nearest") == "nearest" and \
                    attrs.get("nearest_mode", "round_prefer_floor") not in RESIZE_NEAREST_MODES:
                problems.append(f"{where}: nearest_mode {attrs['nearest_mode']}")
        if node.op_type == "MaxPool" and len([o for o in node.output if o]) > 1:
            problems.append(f"{where}: the Indices output is unsupported")
    return problems


def test_the_reference_is_the_matrix_as_published():
    # 180 rows: 142 supported, 38 not; a typo in either list would show here.
    assert (len(TENSORRT_PARSER_OPERATORS), len(TENSORRT_PARSER_UNSUPPORTED)) == (142, 38)
    assert not TENSORRT_PARSER_OPERATORS & TENSORRT_PARSER_UNSUPPORTED
    # Every name is an ONNX operator, but three experimental ones that ONNX has since dropped.
    onnx_ops = {schema.name for schema in onnx.defs.get_all_schemas_with_history()}
    assert (TENSORRT_PARSER_OPERATORS | TENSORRT_PARSER_UNSUPPORTED) - onnx_ops == {
        "ImageScaler", "ParametricSoftplus", "ScaledTanh"}


def test_the_check_finds_what_the_parser_refuses():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    k = helper.make_tensor_value_info("k", TensorProto.INT64, [1])
    nodes = [helper.make_node("Hardmax", ["x"], ["h"], name="hm"),
             helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk"),  # K is a graph input
             helper.make_node("Resize", ["x", "", "", "k"], ["r"], name="rs", mode="cubic")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("h", "v", "r")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x, k], outputs), opset_imports=[helper.make_opsetid("", 18)])
    problems = parser_problems(model)
    assert any(p.startswith("opset 18") for p in problems)
    assert any("Hardmax 'hm': not in" in p for p in problems)
    assert any("TopK 'topk': input 1 must be an initializer" in p for p in problems)
    assert any("Resize 'rs': mode cubic" in p for p in problems)


# The int8 files (pisr-ros quantize) are for ONNX Runtime on CPUs: uint8 activations, which
# TensorRT's QDQ support does not take; test_quantize checks them.
SHIPPED_ONNX = sorted(p for p in (ROOT / "models").glob("*.onnx") if not p.name.endswith(".int8.onnx"))


@pytest.mark.parametrize("path", SHIPPED_ONNX, ids=[p.name for p in SHIPPED_ONNX])
def test_shipped_onnx_parses_in_tensorrt(path):
    assert parser_problems(onnx.load(str(path))) == []


# The ResNet-50 spec takes about 35 s to build and export on 2 cores, full YOLO-Panoptic (74 M
# parameters) longer.
SPECS = [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if "r50" in p.stem or "full" in p.stem else [])
         for p in sorted((ROOT / "config" / "models").glob("*.yaml"))]


@pytest.mark.parametrize("spec_path", SPECS)
def test_every_spec_exports_what_tensorrt_parses(spec_path, tmp_path):
    """A fresh export of each spec in config/models (random weights: the graph is the same)."""
    from pisr_ros.inference.export import export_onnx
    from pisr_ros.models.spec import build_model, load_spec

    torch.manual_seed(0)
    spec = load_spec(spec_path)
    out = tmp_path / f"{spec_path.stem}.onnx"
    export_onnx(build_model(spec).eval(), spec, out, (128, 256))
    model = onnx.load(str(out))
    assert parser_problems(model) == []
    if "pisr" in spec_path.stem:  # PISR's center selection and attention are in the graph, checked above
        assert {"TopK", "MatMul", "Softmax"} <= {n.op_type for n in model.graph.node}
