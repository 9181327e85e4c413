"""Does every node of a graph have a CUDA EP kernel for its op, opset and types? Checked without a GPU.

The kernel table is the pinned onnxruntime-gpu release's own registrations
(``tests/data/cuda_kernels_onnxruntime_gpu_*.json``, written by ``scripts/cuda_kernel_table.py``).
The same check runs against a CPU EP table (``tests/data/cpu_kernels_onnxruntime_*.json``): the
operators onnxruntime-web's WASM backend has, for the browser decoder.
A node is covered when some kernel has its op and domain, a version range holding the
graph's opset for that domain, and, for every type constraint the kernel registers, the
node's inferred input/output element type bound to it (ONNX shape inference gives the types;
the operator schema names which constraint each input and output uses). A node that is not
covered runs on the CPU EP with copies around it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import defs

ONNX_DOMAINS = ("", "ai.onnx")
#: Nodes ONNX Runtime turns into initializers when it loads the graph: they need no kernel.
FOLDED_OPS = frozenset({"Constant"})


@dataclass(frozen=True)
class Kernel:
    """One registered kernel: op, domain ("" for ONNX), opset range (end None: open), types."""

    op: str
    domain: str
    since_version: int
    end_version: int | None
    type_constraints: dict[str, frozenset[str]]

    def covers_version(self, opset: int) -> bool:
        return self.since_version <= opset and (self.end_version is None or opset <= self.end_version)


@dataclass(frozen=True)
class KernelTable:
    """The kernels of one execution provider (CUDA by default) in one onnxruntime release."""

    version: str
    wheel_sha256: str
    kernels: tuple[Kernel, ...]
    provider: str = "CUDAExecutionProvider"

    @property
    def short_name(self) -> str:
        """"CUDA", "CPU": how messages name the provider."""
        return self.provider.removesuffix("ExecutionProvider")

    @classmethod
    def load(cls, path: Path) -> KernelTable:
        data = json.loads(Path(path).read_text())
        kernels = tuple(Kernel(op, domain, since, end, {k: frozenset(v) for k, v in types.items()})
                        for op, domain, since, end, types in data["kernels"])
        return cls(data["version"], data["wheel_sha256"], kernels, data["provider"])

    def for_op(self, op: str, domain: str) -> list[Kernel]:
        domain = "" if domain in ONNX_DOMAINS else domain
        return [k for k in self.kernels if k.op == op and k.domain == domain]


@dataclass(frozen=True)
class Uncovered:
    """A node without a kernel, and why (no such op, no opset range, or which types)."""

    node: str
    op: str
    opset: int
    types: dict[str, str]
    reason: str

    def __str__(self) -> str:
        return f"{self.op} (opset {self.opset}) node {self.node!r} {self.types}: {self.reason}"


def _type_name(elem_type: int) -> str:
    """TensorProto.FLOAT16 -> 'float16', as ONNX Runtime names types."""
    return onnx.TensorProto.DataType.Name(elem_type).lower()


def value_types(model: onnx.ModelProto) -> dict[str, str]:
    """Every tensor's element type by name, after strict ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    graph = inferred.graph
    types = {init.name: _type_name(init.data_type) for init in graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = _type_name(value.type.tensor_type.elem_type)
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    types[node.output[0]] = _type_name(attribute.t.data_type)
    return types


def _formal_bindings(formals: list[defs.OpSchema.FormalParameter], actual: list[str], constraints: set[str],
                     types: dict[str, str]) -> dict[str, set[str]]:
    """Type constraint name -> the element types the node binds to it through these parameters."""
    bound: dict[str, set[str]] = {}
    for position, name in enumerate(actual):
        if not name or not formals:
            continue
        last = formals[-1]
        formal = formals[position] if position < len(formals) else last
        if position >= len(formals) and last.option != defs.OpSchema.FormalParameterOption.Variadic:
            continue
        if formal.type_str in constraints and name in types:
            bound.setdefault(formal.type_str, set()).add(types[name])
    return bound


def node_bindings(node: onnx.NodeProto, opset: int, types: dict[str, str]) -> dict[str, set[str]]:
    """A node's type constraint bindings, read through its operator schema at ``opset``."""
    schema = defs.get_schema(node.op_type, opset, node.domain)
    constraints = {c.type_param_str for c in schema.type_constraints}
    bound = _formal_bindings(list(schema.inputs), list(node.input), constraints, types)
    for key, value in _formal_bindings(list(schema.outputs), list(node.output), constraints, types).items():
        bound.setdefault(key, set()).update(value)
    return bound


def _covers(kernel: Kernel, bound: dict[str, set[str]]) -> bool:
    return all(used <= kernel.type_constraints[name] for name, used in bound.items() if name in kernel.type_constraints)


def uncovered_nodes(model: onnx.ModelProto, table: KernelTable) -> list[Uncovered]:
    """The nodes of ``model``'s main graph that no kernel of ``table`` runs (empty: all on its provider)."""
    ep = table.short_name
    opsets = {("" if o.domain in ONNX_DOMAINS else o.domain): o.version for o in model.opset_import}
    types = value_types(model)
    missing = []
    for node in model.graph.node:
        if node.op_type in FOLDED_OPS:
            continue
        domain = "" if node.domain in ONNX_DOMAINS else node.domain
        opset = opsets[domain]
        bound = node_bindings(node, opset, types)
        shown = {name: ",".join(sorted(used)) for name, used in sorted(bound.items())}
        kernels = table.for_op(node.op_type, domain)
        in_range = [k for k in kernels if k.covers_version(opset)]
        if not bound:
            reason = "its types are unknown (shape inference gave none)"
        elif not kernels:
            reason = f"the {ep} EP has no kernel for this op"
        elif not in_range:
            reason = f"no {ep} kernel for this opset: " + ", ".join(f"{k.since_version}..{k.end_version or ''}" for k in kernels)
        elif not any(_covers(k, bound) for k in in_range):
            offered: dict[str, set[str]] = {}
            for kernel in in_range:
                for name, allowed in kernel.type_constraints.items():
                    offered.setdefault(name, set()).update(allowed)
            reason = f"no {ep} kernel for these types; it has " + "; ".join(
                f"{name}: {','.join(sorted(allowed))}" for name, allowed in sorted(offered.items()))
        else:
            continue
        missing.append(Uncovered(node.name or node.output[0], node.op_type, opset, shown, reason))
    return missing
