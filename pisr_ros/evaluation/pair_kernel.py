"""The evaluator's pixel loop as machine code: two filtered PNG streams in, a pair histogram out.

Per row, the kernel undoes the PNG filter of the ground-truth row and of the predicted row
(PNG's five filter types, 8-bit RGB or RGBA; an alpha channel is skipped, since PNG filters work
on each channel separately), keeps each pixel as its packed id R + 256 G + 256^2 B, turns ids
into segment positions through two lookup tables and adds runs of equal (gt, prediction) pairs
to the histogram. No image is ever held whole.

It is written in LLVM IR through llvmlite and compiled once per process, in about 0.1 s of CPU
with llvmlite's import: a C extension would need a compiler at install time, and numba costs
0.5 s of CPU before its first (cached) function runs, a third of a whole 100-frame evaluation
on two cores. The C it stands for::

    int pair_histogram(u8 *gt, i64 gt_bpp, u8 *pred, i64 pred_bpp, i64 height, i64 width,
                       i32 *gt_lut, i64 gt_last, i32 *pred_lut, i64 pred_last, i64 n_pred,
                       i64 *hist, i32 *gt_rows, i32 *pred_rows)   // rows: 2 x width, zeroed
    {
        for (y = 0; y < height; y++) {
            cur/prev = the two halves of gt_rows, pred_rows, alternating with y;
            if (!decode_row(gt + y * (1 + width * gt_bpp), gt_bpp, width, gt_prev, gt_cur)) return 0;
            if (!decode_row(pred + ..., pred_bpp, width, pred_prev, pred_cur)) return 0;
            for each run of equal (gt_cur[x], pred_cur[x]):
                hist[gt_lut[min(g, gt_last)] * n_pred + pred_lut[min(p, pred_last)]] += run length;
        }
        return 1;
    }

``decode_row`` returns 0 for a filter type PNG does not define. Bytes are added per channel
without carries between channels: ((x & 0x7f7f7f) + (y & 0x7f7f7f)) ^ ((x ^ y) & 0x808080).
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os

import llvmlite
from llvmlite import binding as llvm
from llvmlite import ir

_I1, _I8, _I32, _I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
_PTR = ir.PointerType()


class _Builder:
    """An IRBuilder with mutable variables (allocas, which LLVM turns into registers) and loops."""

    def __init__(self, fn: ir.Function) -> None:
        self.fn = fn
        self._entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self._entry)

    def var(self, typ: ir.Type, init) -> ir.AllocaInstr:
        with self.b.goto_block(self._entry):
            slot = self.b.alloca(typ)
        self.b.store(init if isinstance(init, ir.Value) else ir.Constant(typ, init), slot)
        return slot

    def get(self, slot: ir.AllocaInstr) -> ir.Value:
        return self.b.load(slot, typ=slot.allocated_type)

    def set(self, slot: ir.AllocaInstr, value: ir.Value) -> None:
        self.b.store(value, slot)

    @contextlib.contextmanager
    def loop(self, start, stop):
        """``for (i = start; i < stop; i++)``, yielding i (i64)."""
        b = self.b
        i = self.var(_I64, start)
        head, body, done = (self.fn.append_basic_block(n) for n in ("loop", "body", "done"))
        b.branch(head)
        b.position_at_end(head)
        iv = self.get(i)
        b.cbranch(b.icmp_signed("<", iv, stop), body, done)
        b.position_at_end(body)
        yield iv
        b.store(b.add(iv, ir.Constant(_I64, 1)), i)
        b.branch(head)
        b.position_at_end(done)

    # Values -------------------------------------------------------------------------------

    def i32(self, v: int) -> ir.Constant:
        return ir.Constant(_I32, v)

    def i64(self, v: int) -> ir.Constant:
        return ir.Constant(_I64, v)

    def load_at(self, ptr, index, typ) -> ir.Value:
        return self.b.load(self.b.gep(ptr, [index], inbounds=True, source_etype=typ), typ=typ)

    def store_at(self, value, ptr, index) -> None:
        self.b.store(value, self.b.gep(ptr, [index], inbounds=True, source_etype=value.type))

    def packed(self, src, j) -> ir.Value:
        """The three bytes at ``src[j:j + 3]`` as R | G << 8 | B << 16 (i32)."""
        b = self.b
        out = b.zext(self.load_at(src, j, _I8), _I32)
        for k in (1, 2):
            byte = b.zext(self.load_at(src, b.add(j, self.i64(k)), _I8), _I32)
            out = b.or_(out, b.shl(byte, self.i32(8 * k)))
        return out

    def add_bytes(self, x, y) -> ir.Value:
        b = self.b
        low = self.i32(0x7F7F7F)
        return b.xor(b.add(b.and_(x, low), b.and_(y, low)), b.and_(b.xor(x, y), self.i32(0x808080)))

    def add_residual(self, f, pred) -> ir.Value:
        """``add_bytes(f, pred)``, with a branch for the common residual 0: in a run of equal
        pixels the value is then the predictor as is, not a chain of additions through it."""
        b = self.b
        out = self.var(_I32, pred)
        with b.if_then(b.icmp_unsigned("!=", f, self.i32(0)), likely=False):
            self.set(out, self.add_bytes(f, pred))
        return self.get(out)

    def channel(self, x, k) -> ir.Value:
        return self.b.and_(self.b.lshr(x, self.i32(8 * k)), self.i32(0xFF))

    def absolute(self, v) -> ir.Value:
        b = self.b
        return b.select(b.icmp_signed("<", v, self.i32(0)), b.neg(v), v)

    def per_channel(self, a, b_, c, predictor) -> ir.Value:
        """The packed predictor of three channels, ``predictor(a, b, c)`` on each."""
        out = self.i32(0)
        for k in range(3):
            p = predictor(self.channel(a, k), self.channel(b_, k), self.channel(c, k))
            out = self.b.or_(out, self.b.shl(p, self.i32(8 * k)))
        return out

    def paeth(self, a, b_, c) -> ir.Value:
        b = self.b
        pa = self.absolute(b.sub(b_, c))
        pb = self.absolute(b.sub(a, c))
        pc = self.absolute(b.sub(b.add(a, b_), b.shl(c, self.i32(1))))
        take_a = b.and_(b.icmp_signed("<=", pa, pb), b.icmp_signed("<=", pa, pc))
        return b.select(take_a, a, b.select(b.icmp_signed("<=", pb, pc), b_, c))

    def average(self, a, b_, _c) -> ir.Value:
        return self.b.lshr(self.b.add(a, b_), self.i32(1))


def _decode_row(module: ir.Module, channels: int) -> ir.Function:
    """``i1 decode_row<channels>(u8 *row, i64 width, i32 *prev, i32 *cur)``: one version per
    pixel size, so that byte offsets are constants."""
    fn = ir.Function(module, ir.FunctionType(_I1, [_PTR, _I64, _PTR, _PTR]), name=f"decode_row{channels}")
    fn.linkage = "internal"
    fn.attributes.add("alwaysinline")
    row, width, prev, cur = fn.args
    k = _Builder(fn)
    bpp = k.i64(channels)
    b = k.b
    kind = k.load_at(row, k.i64(0), _I8)
    src = b.gep(row, [k.i64(1)], inbounds=True, source_etype=_I8)
    ok = fn.append_basic_block("ok")
    bad = fn.append_basic_block("bad")
    cases = [fn.append_basic_block(f"filter{t}") for t in range(5)]
    switch = b.switch(kind, bad)
    for t, block in enumerate(cases):
        switch.add_case(ir.Constant(_I8, t), block)

    def filtered(x):
        return k.packed(src, b.mul(x, bpp))

    # 0 None, 1 Sub (left), 2 Up (above), 3 Average, 4 Paeth.
    for t, block in enumerate(cases):
        b.position_at_end(block)
        a = k.var(_I32, 0)  # the pixel to the left; none left of the first: zeros
        c = k.var(_I32, 0)  # the one above it
        with k.loop(k.i64(0), width) as x:
            f = filtered(x)
            if t == 0:
                value = f
            elif t == 1:
                value = k.add_residual(f, k.get(a))
            elif t == 2:
                value = k.add_bytes(f, k.load_at(prev, x, _I32))
            else:
                above = k.load_at(prev, x, _I32)
                av, cv = k.get(a), k.get(c)
                if t == 3:
                    pred = k.per_channel(av, above, cv, k.average)
                else:
                    # When the pixel above equals the one above-left (most of a label image),
                    # pa = 0 on every channel and the predictor is the left pixel.
                    chosen = k.var(_I32, av)
                    with b.if_then(b.icmp_unsigned("!=", above, cv), likely=False):
                        k.set(chosen, k.per_channel(av, above, cv, k.paeth))
                    pred = k.get(chosen)
                value = k.add_residual(f, pred)
                k.set(c, above)
            k.set(a, value)
            k.store_at(value, cur, x)
        b.branch(ok)
    b.position_at_end(ok)
    b.ret(ir.Constant(_I1, 1))
    b.position_at_end(bad)
    b.ret(ir.Constant(_I1, 0))
    return fn


def _pair_histogram(module: ir.Module, decode_rows: dict[int, ir.Function]) -> ir.Function:
    args = [_PTR, _I64, _PTR, _I64, _I64, _I64, _PTR, _I64, _PTR, _I64, _I64, _PTR, _PTR, _PTR]
    fn = ir.Function(module, ir.FunctionType(_I32, args), name="pair_histogram")
    (gt, gt_bpp, pred, pred_bpp, height, width, gt_lut, gt_last, pred_lut, pred_last, n_pred,
     hist, gt_rows, pred_rows) = fn.args
    k = _Builder(fn)
    b = k.b
    fail = fn.append_basic_block("fail")
    one = k.i64(1)
    gt_stride = b.add(b.mul(width, gt_bpp), one)
    pred_stride = b.add(b.mul(width, pred_bpp), one)

    def cell(g, p):
        gi = k.load_at(gt_lut, b.select(b.icmp_unsigned("<", g, gt_last), g, gt_last), _I32)
        pi = k.load_at(pred_lut, b.select(b.icmp_unsigned("<", p, pred_last), p, pred_last), _I32)
        return b.add(b.mul(b.sext(gi, _I64), n_pred), b.sext(pi, _I64))

    def flush(g, p, run):
        i = cell(g, p)
        k.store_at(b.add(k.load_at(hist, i, _I64), run), hist, i)

    with k.loop(k.i64(0), height) as y:
        odd = b.and_(y, one)
        cur_off = b.mul(odd, width)
        prev_off = b.mul(b.xor(odd, one), width)
        decoded = []
        for src, bpp, stride, rows in ((gt, gt_bpp, gt_stride, gt_rows), (pred, pred_bpp, pred_stride, pred_rows)):
            row = b.gep(src, [b.mul(y, stride)], inbounds=True, source_etype=_I8)
            cur = b.gep(rows, [cur_off], inbounds=True, source_etype=_I32)
            prev = b.gep(rows, [prev_off], inbounds=True, source_etype=_I32)
            good = k.var(_I1, 0)
            with b.if_else(b.icmp_signed("==", bpp, k.i64(3))) as (rgb, rgba):
                with rgb:
                    k.set(good, b.call(decode_rows[3], [row, width, prev, cur]))
                with rgba:
                    k.set(good, b.call(decode_rows[4], [row, width, prev, cur]))
            good = k.get(good)
            next_block = fn.append_basic_block("decoded")
            b.cbranch(good, next_block, fail)
            b.position_at_end(next_block)
            decoded.append(cur)
        g_row, p_row = decoded
        # Neighbouring pixels mostly form the same pair: add runs, so the histogram is not one
        # long chain of increments of one cell.
        last_g = k.var(_I64, b.zext(k.load_at(g_row, k.i64(0), _I32), _I64))
        last_p = k.var(_I64, b.zext(k.load_at(p_row, k.i64(0), _I32), _I64))
        run = k.var(_I64, 0)
        with k.loop(k.i64(0), width) as x:
            g = b.zext(k.load_at(g_row, x, _I32), _I64)
            p = b.zext(k.load_at(p_row, x, _I32), _I64)
            same = b.and_(b.icmp_unsigned("==", g, k.get(last_g)), b.icmp_unsigned("==", p, k.get(last_p)))
            with b.if_else(same) as (then, otherwise):
                with then:
                    k.set(run, b.add(k.get(run), one))
                with otherwise:
                    flush(k.get(last_g), k.get(last_p), k.get(run))
                    k.set(last_g, g)
                    k.set(last_p, p)
                    k.set(run, one)
        flush(k.get(last_g), k.get(last_p), k.get(run))
    b.ret(ir.Constant(_I32, 1))
    b.position_at_end(fail)
    b.ret(ir.Constant(_I32, 0))
    return fn


_PASSES = ("always_inliner", "sroa", "instruction_combine", "simplify_cfg", "loop_rotate",
           "instruction_combine", "new_gvn", "simplify_cfg")

_ARGTYPES = (
    ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
    ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
)


def compile_kernel(cache_dir: str | None = None):
    """The compiled ``pair_histogram`` as a ctypes function (which releases the GIL while it
    runs), and the execution engine that owns its code (keep it alive as long as the function).

    The machine code is kept in ``cache_dir`` (default: :func:`default_cache_dir`), under a name
    made of everything it depends on (the IR, llvmlite's version, the CPU and its features):
    loading it skips the optimisation and code generation, two thirds of the compile time.
    A cache that cannot be read or written is simply not used.
    """
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    module = ir.Module(name="pisr_ros_pair_kernel")
    module.triple = llvm.get_process_triple()
    _pair_histogram(module, {c: _decode_row(module, c) for c in (3, 4)})
    text = str(module)
    cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    key = hashlib.sha256("\n".join([text, llvmlite.__version__, cpu, features, ",".join(_PASSES), "opt=3"]).encode()).hexdigest()
    cache = os.path.join(cache_dir or default_cache_dir(), f"pair_kernel-{key[:24]}.o")
    cached = _read(cache)
    parsed = llvm.parse_assembly(text)
    parsed.verify()
    machine = llvm.Target.from_triple(module.triple).create_target_machine(cpu=cpu, features=features, opt=3)
    if cached is None:
        # A short pipeline (inline, allocas to registers, fold, straighten loops) compiles in a
        # third of the time of LLVM's -O2/-O3 pipelines, and the kernel it gives is no slower.
        builder = llvm.create_pass_builder(machine, llvm.create_pipeline_tuning_options(speed_level=0))
        passes = llvm.create_new_module_pass_manager()
        for name in _PASSES:
            getattr(passes, f"add_{name}_pass")()
        passes.run(parsed, builder)
    engine = llvm.create_mcjit_compiler(parsed, machine)
    engine.set_object_cache(lambda _module, code: cached is None and _write(cache, code), lambda _module: cached)
    engine.finalize_object()
    address = engine.get_function_address("pair_histogram")
    return ctypes.CFUNCTYPE(ctypes.c_int32, *_ARGTYPES)(address), engine


def default_cache_dir() -> str:
    """``$PISR_ROS_CACHE``, else ``$XDG_CACHE_HOME/pisr_ros``, else ``~/.cache/pisr_ros``."""
    if os.environ.get("PISR_ROS_CACHE"):
        return os.environ["PISR_ROS_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pisr_ros")


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read() or None
    except OSError:
        return None


def _write(path: str, code: bytes) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(code)
        os.replace(tmp, path)  # whole or not at all, also with several processes at once
    except OSError:
        pass
