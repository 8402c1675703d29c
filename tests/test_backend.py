"""Backend selection, the CUDA probe and its messages, device random generators, transfers."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from array_api_compat import device as array_device
from conftest import LIBRARY_OF_FAMILY, require_module

import mlp_xp
from mlp_xp import arrays
from mlp_xp.backends import SPECS, BackendUnavailableError, counter, get_backend

CUDA_FAMILIES = ("cuda", "cupy", "torch:cuda", "jax:cuda")


def gpu_present() -> bool:
    """True when CuPy sees at least one usable CUDA device."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def torch_cuda_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def supports_float64(backend: mlp_xp.Backend) -> bool:
    return "no_float64" not in backend.spec


@pytest.fixture(autouse=True)
def _no_device_env(monkeypatch):
    monkeypatch.delenv("MLP_XP_DEVICE", raising=False)


# -- selection -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_resolves_or_is_unavailable(spec):
    concrete = spec.replace(":N", ":0")
    library = LIBRARY_OF_FAMILY.get(spec.split(":")[0])
    if library is not None:
        require_module(library)  # a missing library skips here, and fails in CI
    try:
        backend = get_backend(concrete)
    except BackendUnavailableError as exc:
        assert concrete.startswith(CUDA_FAMILIES), f"{concrete!r} should be available on every machine: {exc}"
        if concrete.startswith("torch"):
            assert not torch_cuda_present()
        else:
            assert not gpu_present()
        assert str(exc)
        return
    assert isinstance(backend, mlp_xp.Backend)
    # the spec a backend reports turns back into the same library and device
    again = get_backend(backend.spec)
    assert again.name == backend.name
    assert again.spec == backend.spec
    assert again.device == backend.device
    x = backend.asarray(np.arange(3.0, dtype=np.float32), "float32")
    assert array_device(x) == backend.device


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("numpy", "numpy"),
        ("cpu", "numpy"),
        (" NumPy ", "numpy"),
        ("array-api-strict", "array-api-strict"),
        ("array-api-strict:device1", "array-api-strict"),
        ("array-api-strict:no_float64", "array-api-strict"),
    ],
)
def test_spec_names_library(spec, name):
    backend = get_backend(spec)
    assert backend.name == name
    assert backend.xp.__name__.endswith(("numpy", "array_api_strict"))


def test_strict_devices_differ():
    cpu, dev1 = get_backend("array-api-strict"), get_backend("array-api-strict:device1")
    assert cpu.device != dev1.device
    assert cpu.spec == "array-api-strict"
    assert dev1.spec == "array-api-strict:device1"
    assert str(dev1.device).find("device1") >= 0


def test_torch_specs():
    require_module("torch")
    import torch

    for spec in ("torch", "torch:cpu"):
        backend = get_backend(spec)
        assert backend.name == "torch"
        assert backend.device == torch.device("cpu")
        assert backend.spec == "torch"


def test_backend_passes_through():
    backend = get_backend("numpy")
    assert get_backend(backend) is backend


@pytest.mark.parametrize("spec", ["tpu", "gpu", "numpy:1", "mxnet", ""])
def test_unknown_spec_lists_valid_specs(spec):
    with pytest.raises(ValueError) as info:
        get_backend(spec)
    message = str(info.value)
    assert "unknown" in message
    for valid in SPECS:
        assert valid in message


def test_unknown_strict_device():
    with pytest.raises(ValueError, match="device1"):
        get_backend("array-api-strict:device9")


def test_cuda_index_must_be_a_number():
    with pytest.raises(ValueError, match="must be a number"):
        get_backend("cuda:first")


# -- the CUDA probe ------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cupy", "cupy:1"])
def test_cuda_without_cupy_installed(monkeypatch, spec):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    with pytest.raises(BackendUnavailableError) as info:
        get_backend(spec)
    message = str(info.value)
    assert "CuPy is not installed" in message
    assert 'pip install "mlp-xp[cuda12]"' in message
    assert "--device auto" in message


def test_cuda_with_cupy_but_no_gpu():
    pytest.importorskip("cupy", reason="CuPy not installed")
    if gpu_present():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("cuda")
    message = str(info.value)
    assert "no usable CUDA device" in message
    assert "--device auto" in message


def test_cuda_probe_failure_is_reported(monkeypatch):
    """A CuPy whose device query fails (no driver) gives the 'no usable CUDA device' error."""
    import types

    class FakeRuntimeError(RuntimeError):
        pass

    def count():
        raise FakeRuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendUnavailableError, match="no usable CUDA device") as info:
        get_backend("cuda")
    assert "FakeRuntimeError" in str(info.value)
    assert "--device auto" in str(info.value)
    assert get_backend("auto").name == "numpy"


def test_cuda_index_beyond_device_count(monkeypatch):
    import types

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendUnavailableError, match=r"device 3 .* 1 CUDA device"):
        get_backend("cuda:3")


def test_torch_cuda_without_gpu():
    require_module("torch")
    if torch_cuda_present():
        pytest.skip("torch sees a CUDA device")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        get_backend("torch:cuda")


def test_torch_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(BackendUnavailableError, match=r"mlp-xp\[torch\]"):
        get_backend("torch")


def test_auto_falls_back_to_numpy_without_gpu():
    if gpu_present():
        assert get_backend("auto").name == "cupy"
    else:
        backend = get_backend("auto")
        assert backend.name == "numpy"
        assert backend.spec == "numpy"
    assert get_backend().name == get_backend("auto").name


def test_auto_without_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert get_backend("auto").name == "numpy"


def test_env_variable_replaces_auto(monkeypatch):
    monkeypatch.setenv("MLP_XP_DEVICE", "array-api-strict:device1")
    assert get_backend("auto").spec == "array-api-strict:device1"
    # an explicit spec wins over the variable
    assert get_backend("numpy").name == "numpy"


def test_available_backends():
    result = mlp_xp.available_backends()
    assert result["numpy"] == "ok"
    assert result["array-api-strict"] == "ok"
    assert set(result) >= {"numpy", "cuda", "torch", "torch:cuda", "array-api-strict"}
    if not gpu_present():
        assert result["cuda"] != "ok"
        with pytest.raises(BackendUnavailableError) as info:
            get_backend("cuda")
        assert result["cuda"] == str(info.value)


# -- random generators ---------------------------------------------------------------------


def _dtypes(backend):
    return ("float32", "float64") if supports_float64(backend) else ("float32",)


def test_any_numpy_view_uploads_and_loads(backend):
    """Reversed and strided views (negative strides, which torch cannot wrap) upload as their values."""
    x = np.arange(24, dtype=np.float32).reshape(6, 4)
    views = {"reversed": x[:, ::-1], "flipped": x[::-1], "strided": x[::2, 1::2]}
    for name, view in views.items():
        np.testing.assert_array_equal(backend.to_numpy(backend.asarray(view)), view, err_msg=name)
    loader = mlp_xp.DeviceLoader(x[:, ::-1], np.arange(6)[::-1], backend, batch_size=4, shuffle=False)
    xb, yb = next(iter(loader))
    np.testing.assert_array_equal(backend.to_numpy(xb), x[:4, ::-1])
    np.testing.assert_array_equal(backend.to_numpy(yb), [5, 4, 3, 2])


def test_random_same_seed_same_arrays(backend):
    for dtype in _dtypes(backend):
        a, b, c = backend.random(7), backend.random(7), backend.random(8)
        for method in ("normal", "uniform"):
            first = getattr(a, method)((3, 4), dtype)
            second = getattr(b, method)((3, 4), dtype)
            other = getattr(c, method)((3, 4), dtype)
            for x in (first, second, other):
                assert x.dtype == backend.dtype(dtype)
                assert array_device(x) == backend.device
                assert tuple(x.shape) == (3, 4)
            np.testing.assert_array_equal(backend.to_numpy(first), backend.to_numpy(second))
            assert not np.array_equal(backend.to_numpy(first), backend.to_numpy(other))
        # successive draws of one generator differ
        assert not np.array_equal(backend.to_numpy(a.uniform((5,), dtype)), backend.to_numpy(a.uniform((5,), dtype)))


def test_random_distributions(backend):
    rng = backend.random(0)
    u = backend.to_numpy(rng.uniform((20000,)))
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.01
    z = backend.to_numpy(rng.normal((20000,)))
    assert abs(z.mean()) < 0.03
    assert abs(z.std() - 1.0) < 0.03


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.7])
def test_bernoulli_mask(backend, keep):
    mask = backend.random(3).bernoulli_mask((200, 250), keep, "float32")
    assert mask.dtype == backend.xp.float32
    assert array_device(mask) == backend.device
    host = backend.to_numpy(mask)
    assert set(np.unique(host)) <= {0.0, 1.0}
    assert abs(host.mean() - keep) < 0.01


def test_permutation(backend):
    perm = backend.random(4).permutation(1000)
    assert perm.dtype == backend.xp.int64
    assert array_device(perm) == backend.device
    host = backend.to_numpy(perm)
    np.testing.assert_array_equal(np.sort(host), np.arange(1000))
    assert not np.array_equal(host, np.arange(1000))
    np.testing.assert_array_equal(host, backend.to_numpy(backend.random(4).permutation(1000)))
    # usable as an index array on the same device (array-api-strict insists)
    x = backend.asarray(np.arange(1000, dtype=np.float32) * 2, "float32")
    np.testing.assert_array_equal(backend.to_numpy(backend.xp.take(x, perm, axis=0)), host * 2)


def test_host_drawn_random_identical_across_backends(other_backend):
    reference = mlp_xp.backends.HostDrawnRandom(get_backend("numpy"), seed=5)
    mine = mlp_xp.backends.HostDrawnRandom(other_backend, seed=5)
    for _ in range(2):
        expected = reference.bernoulli_mask((30, 40), 0.6)
        got = mine.bernoulli_mask((30, 40), 0.6)
        assert array_device(got) == other_backend.device
        np.testing.assert_array_equal(other_backend.to_numpy(got), expected)
    np.testing.assert_array_equal(other_backend.to_numpy(mine.permutation(50)), reference.permutation(50))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.7])
def test_counter_mask_statistics(backend, keep):
    """The counter-based masks (drawn inside torch.compile): the keep fraction, draws of one
    key independent of each other, neighbouring elements independent, and the key advanced
    by one per draw on the device."""
    key = counter.new_key(backend, 2**40 + 3)  # the seed is taken mod 2**32
    first, key = counter.bernoulli_mask(key, (200, 250), keep, backend.xp.float32)
    second, key = counter.bernoulli_mask(key, (200, 250), keep, backend.xp.float32)
    assert first.dtype == backend.xp.float32 and tuple(first.shape) == (200, 250)
    assert array_device(first) == array_device(key) == backend.device
    np.testing.assert_array_equal(backend.to_numpy(key), [3, 2])
    a, b = backend.to_numpy(first), backend.to_numpy(second)
    assert set(np.unique(a)) <= {0.0, 1.0}
    assert abs(a.mean() - keep) < 0.01 and abs(b.mean() - keep) < 0.01
    both = keep * keep  # independent draws agree on a kept element this often
    assert abs((a * b).mean() - both) < 0.01
    assert abs((a[:, 1:] * a[:, :-1]).mean() - both) < 0.01
    assert abs((a[1:] * a[:-1]).mean() - both) < 0.01


def test_skipping_draws_continues_the_stream_where_those_draws_would_leave_it(backend):
    """``DeviceRandom.skip`` (a run resumed inside an epoch) leaves a generator where drawing
    that many masks would; ``counter.skipped`` advances a counter key the same way."""
    drawn, skipped = backend.random(5), backend.random(5)
    for _ in range(3):
        drawn.bernoulli_mask((4, 6), 0.5, "float32")
    skipped.skip((4, 6), "float32", 3)
    np.testing.assert_array_equal(
        backend.to_numpy(skipped.bernoulli_mask((4, 6), 0.5)), backend.to_numpy(drawn.bernoulli_mask((4, 6), 0.5))
    )
    key = counter.new_key(backend, 9)
    for _ in range(3):
        _, key = counter.bernoulli_mask(key, (4, 6), 0.5, backend.xp.float32)
    ahead = counter.skipped(counter.new_key(backend, 9), 3)
    np.testing.assert_array_equal(backend.to_numpy(ahead), backend.to_numpy(key))
    assert array_device(ahead) == backend.device


def _reference_counter_bits(seed: int, counter_value: int, n: int) -> list[int]:
    """The module docstring's formula in Python integers, with Mueller's hash written out."""

    def mix(h):
        for _ in range(2):
            h = (((h >> 16) ^ h) * 0x45D9F3B) % 2**32
        return (h >> 16) ^ h

    golden = round(2**32 / ((1 + 5**0.5) / 2) ** 2)
    stream = mix((mix(seed % 2**32) + counter_value) % 2**32)
    return [mix(mix(i * golden % 2**32) ^ stream) for i in range(n)]


@pytest.mark.parametrize("spec", ["numpy", "array-api-strict:device1"])
@pytest.mark.parametrize("seed", [0, 7, 2**31 - 1, 2**32 + 5])
def test_counter_masks_follow_the_documented_hash(spec, seed):
    """Masks of draws 0 and 1 against the formula computed with Python integers: element i is
    kept iff its 32 bits are below keep_prob·2³² (an element whose bits equal it is dropped);
    on NumPy and on the emulated device (every array of the draw on the key's device)."""
    backend = get_backend(spec)
    key = counter.new_key(backend, seed)
    np.testing.assert_array_equal(backend.to_numpy(key), [seed % 2**32, 0])
    for draw in range(2):
        bits = _reference_counter_bits(seed, draw, 150)
        keep = bits[0] / 2**32  # element 0 sits exactly at the threshold
        mask, key = counter.bernoulli_mask(key, (3, 50), keep, backend.xp.float32)
        expected = (np.array(bits, dtype=np.int64) < bits[0]).astype(np.float32).reshape(3, 50)
        assert array_device(mask) == backend.device and expected[0, 0] == 0
        np.testing.assert_array_equal(backend.to_numpy(mask), expected)
    ones, _ = counter.bernoulli_mask(key, (4,), 1.0, backend.xp.float32)
    np.testing.assert_array_equal(backend.to_numpy(ones), np.ones(4, np.float32))


def test_counter_masks_identical_across_backends(other_backend):
    """The same key gives the same bits on every library (int64 arithmetic, no overflow);
    another seed gives another mask."""

    def draws(backend, seed):
        key, masks = counter.new_key(backend, seed), []
        for _ in range(2):
            mask, key = counter.bernoulli_mask(key, (30, 40), 0.6, backend.xp.float32)
            masks.append(backend.to_numpy(mask))
        return masks

    expected = draws(get_backend("numpy"), 5)
    for got, want in zip(draws(other_backend, 5), expected):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(draws(other_backend, 6)[0], expected[0])


def test_host_rng_is_seeded():
    a = mlp_xp.backends.host_rng(3).standard_normal(5)
    b = mlp_xp.backends.host_rng(3).standard_normal(5)
    np.testing.assert_array_equal(a, b)


# -- transfers and facts -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool"])
def test_asarray_to_numpy_round_trip(backend, dtype):
    if dtype == "float64" and not supports_float64(backend):
        pytest.skip("float32-only device")
    host = (np.arange(-6, 6).reshape(3, 4) * 1.25).astype(dtype)
    x = backend.asarray(host)
    assert x.dtype == backend.dtype(dtype)
    assert array_device(x) == backend.device
    back = backend.to_numpy(x)
    assert isinstance(back, np.ndarray)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, host)


def test_asarray_converts_dtype_and_sequences(backend):
    x = backend.asarray([[1, 2], [3, 4]], "float32")
    assert x.dtype == backend.xp.float32
    assert array_device(x) == backend.device
    np.testing.assert_array_equal(backend.to_numpy(x), np.array([[1, 2], [3, 4]], dtype=np.float32))
    y = backend.asarray(np.linspace(0, 1, 5), "float32")  # float64 host -> float32 device
    assert y.dtype == backend.xp.float32
    np.testing.assert_allclose(backend.to_numpy(y), np.linspace(0, 1, 5), rtol=1e-7)


def test_to_numpy_does_not_alias_device_results(backend):
    x = backend.asarray(np.zeros(3, dtype=np.float32))
    y = x + 1.0
    np.testing.assert_array_equal(backend.to_numpy(y), np.ones(3, dtype=np.float32))


def test_dtype_lookup(backend):
    assert backend.dtype("float32") == backend.xp.float32
    assert backend.dtype(backend.xp.int64) == backend.xp.int64


def test_describe(backend):
    info = backend.describe()
    assert info["backend"] == backend.name
    assert info["spec"] == backend.spec
    assert info["device"] == str(backend.device)
    assert info["numpy"] == np.__version__
    assert isinstance(info["version"], str) and info["version"] != "?"
    assert isinstance(info["blas"], list)
    json.dumps(info)  # plain data for benchmark records
    if backend.name == "torch":
        assert info["torch_threads"] >= 1
    if backend.name == "cupy":
        assert info["gpu"]


def test_cpu_facts(backend):
    backend.synchronize()
    if backend.is_gpu:
        assert backend.memory_in_use() >= 0
    else:
        assert backend.spec in ("numpy", "torch", "jax") or backend.name == "array-api-strict"
        assert backend.memory_in_use() is None
    assert backend.spec in repr(backend)


@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_asarray_keeps_zero_d_shape(backend, dtype):
    host = np.asarray(3, dtype=dtype)
    x = backend.asarray(host, dtype)
    assert tuple(x.shape) == ()
    back = backend.to_numpy(x)
    assert back.shape == ()
    assert back == 3
    scalar = backend.asarray(2.5, "float32")  # a Python scalar too
    assert tuple(scalar.shape) == ()


def test_to_numpy_is_a_copy(backend):
    """``to_numpy`` is documented as a copy: a host array taken before an in-place update
    (as the optimizers do) must keep the old values on every backend, not only on GPUs."""
    x = backend.asarray(np.zeros(3, dtype=np.float32))
    before = backend.to_numpy(x)
    x += 1.0
    np.testing.assert_array_equal(before, np.zeros(3, dtype=np.float32))


def test_host_allocator_tuning_once_and_opt_out(monkeypatch):
    """NumPy-backed backends keep glibc from trimming freed memory after every step (page faults
    per step otherwise): mallopt gets the documented thresholds once per process, or not at all
    with MLP_XP_MALLOC_TUNING=0."""
    from mlp_xp.backends import base

    calls = []

    class FakeLibc:
        def mallopt(self, option, value):
            calls.append((option, value))

    monkeypatch.setattr(base.ctypes, "CDLL", lambda name: FakeLibc())
    monkeypatch.setattr(base.sys, "platform", "linux")
    monkeypatch.setattr(base, "_HOST_ALLOCATOR_TUNED", False)
    monkeypatch.setenv("MLP_XP_MALLOC_TUNING", "0")
    get_backend("numpy")
    assert calls == []
    monkeypatch.delenv("MLP_XP_MALLOC_TUNING")
    get_backend("numpy")
    get_backend("array-api-strict")
    assert calls == [(-3, 32 << 20), (-1, 256 << 20)]


def test_hot_path_device_and_isdtype_agree_with_the_standard_helpers(backend):
    """``arrays.device`` reads the ``device`` attribute (falling back to array-api-compat's
    helper, as for JAX tracers) and ``arrays.isdtype`` remembers ``xp.isdtype``: same answers."""
    xp = backend.xp
    x = xp.zeros((2, 3), dtype=backend.dtype("float32"), device=backend.device)
    assert arrays.device(x) == array_device(x)
    assert arrays.device(x) == backend.device
    for dtype in (xp.float32, xp.int64, xp.int8, xp.bool):
        for kind in ("integral", "real floating"):
            assert arrays.isdtype(xp, dtype, kind) is bool(xp.isdtype(dtype, kind))
            assert arrays.isdtype(xp, dtype, kind) is bool(xp.isdtype(dtype, kind))  # remembered: the same


def test_hot_path_device_skips_the_compat_lookup_where_the_attribute_answers(backend, monkeypatch):
    """The point of ``arrays.device``: a plain ``device`` attribute is read, array-api-compat's
    helper (which first works out the array's library) is asked only where it is missing or a
    method."""
    calls = []
    monkeypatch.setattr(arrays, "compat_device", lambda a: calls.append(a) or array_device(a))
    x = backend.xp.zeros((2, 3), dtype=backend.dtype("float32"), device=backend.device)
    assert arrays.device(x) == backend.device
    assert len(calls) == (1 if callable(getattr(x, "device", None)) else 0)


def test_hot_path_device_falls_back_where_the_attribute_is_missing_or_a_method(monkeypatch):
    answer = object()
    monkeypatch.setattr(arrays, "compat_device", lambda a: answer)

    class Method:  # an older library's ``device()`` method
        def device(self):
            raise AssertionError("arrays.device must not call a device method itself")

    assert arrays.device(object()) is answer
    assert arrays.device(Method()) is answer


def test_hot_path_isdtype_remembers_per_namespace():
    """Two namespaces asked about the same dtype keep their own answers; each asks once."""
    asked = []

    def namespace(answer):
        return types.SimpleNamespace(isdtype=lambda dtype, kind: asked.append(answer) or answer)

    yes, no, dtype = namespace(True), namespace(False), object()
    assert [arrays.isdtype(xp, dtype, "integral") for xp in (yes, no, yes, no)] == [True, False, True, False]
    assert asked == [True, False]


def test_hot_path_device_inside_a_jax_trace():
    jax = require_module("jax")
    seen = []

    @jax.jit
    def traced(a):
        seen.append((arrays.device(a), array_device(a)))
        return a * 2

    traced(jax.numpy.zeros(3))
    assert seen and seen[0][0] == seen[0][1]


REDUCTIONS = [
    (name, axis)
    for name in ("sum", "max", "min", "argmax")
    for axis in (None, 0, -1, (0, 1))
    if not (name == "argmax" and isinstance(axis, tuple))  # argmax takes one axis
]


@pytest.mark.parametrize("name, axis", REDUCTIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_numpy_namespace_reductions_match_array_api_compat(name, axis, dtype, keepdims):
    """The NumPy backend's fast reductions give compat's values, types, dtypes and shapes."""
    import array_api_compat.numpy as compat

    fast = mlp_xp.get_backend("numpy").xp
    x = np.random.default_rng(3).integers(-5, 6, size=(4, 3, 2)).astype(dtype)
    want = getattr(compat, name)(x, axis=axis, keepdims=keepdims)
    got = getattr(fast, name)(x, axis=axis, keepdims=keepdims)
    assert type(got) is type(want)
    assert got.dtype == np.asarray(want).dtype and got.shape == np.shape(want)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rows, cols", [(15, 10), (16, 10), (64, 10), (1000, 2), (20, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_numpy_namespace_row_max_matches_array_api_compat(rows, cols, dtype, keepdims):
    """Row maxima (``max`` over the last axis of a matrix, which the NumPy backend picks at each
    row's argmax from 16 rows on) equal compat's, NaN rows, infinities and ties included."""
    import array_api_compat.numpy as compat

    fast = mlp_xp.get_backend("numpy").xp
    x = np.random.default_rng(rows).standard_normal((rows, cols)).astype(dtype)
    x[1, -1], x[2, 0], x[3, :] = np.nan, np.inf, -np.inf  # a NaN, +inf, a row all -inf
    x[4, :] = 1.5  # a row of ties
    for axis in (-1, 1):
        want = compat.max(x, axis=axis, keepdims=keepdims)
        got = fast.max(x, axis=axis, keepdims=keepdims)
        assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_numpy_namespace_row_max_of_empty_rows_raises_as_numpy_does():
    fast = mlp_xp.get_backend("numpy").xp
    with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
        fast.max(np.zeros((32, 0), dtype=np.float32), axis=-1)


@pytest.mark.parametrize(
    "call",
    [
        lambda xp, x: xp.take(x, xp.asarray([2, 0, 2]), axis=0),
        lambda xp, x: xp.take(x, xp.asarray([1, 0]), axis=-1),
        lambda xp, x: xp.take(xp.reshape(x, (-1,)), xp.asarray([5, 1])),
        lambda xp, x: xp.astype(x, xp.int8),
        lambda xp, x: xp.astype(x, xp.float64, device="cpu"),
        lambda xp, x: xp.eye(3, dtype=xp.float32),
        lambda xp, x: xp.eye(2, 4, k=1, dtype=xp.int64, device="cpu"),
        lambda xp, x: xp.eye(3),
        lambda xp, x: xp.arange(5),
        lambda xp, x: xp.arange(2, 11, 3, dtype=xp.int64, device="cpu"),
        lambda xp, x: xp.arange(1.0, step=0.25, dtype=xp.float32),
    ],
    ids=[
        "take-0",
        "take-last",
        "take-1d",
        "astype",
        "astype-device",
        "eye",
        "eye-k",
        "eye-default",
        "arange",
        "arange-step",
        "arange-float",
    ],
)
def test_numpy_namespace_array_functions_match_array_api_compat(call):
    """The NumPy backend's direct ``take``, ``astype``, ``eye`` and ``arange`` give compat's values, dtypes
    and shapes."""
    import array_api_compat.numpy as compat

    fast = mlp_xp.get_backend("numpy").xp
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 4.5
    want, got = call(compat, x), call(fast, x)
    assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_numpy_namespace_astype_copies_unless_told_not_to():
    fast = mlp_xp.get_backend("numpy").xp
    x = np.ones(3, dtype=np.float32)
    assert fast.astype(x, fast.float32) is not x
    assert fast.astype(x, fast.float32, copy=False) is x


@pytest.mark.parametrize(
    "call",
    [
        lambda xp: xp.astype(xp.ones(2), xp.float32, device="gpu"),
        lambda xp: xp.eye(2, device="gpu"),
        lambda xp: xp.arange(3, device="gpu"),
    ],
    ids=["astype", "eye", "arange"],
)
def test_numpy_namespace_rejects_other_devices(call):
    with pytest.raises(ValueError, match="Unsupported device for NumPy: 'gpu'"):
        call(mlp_xp.get_backend("numpy").xp)


def test_numpy_namespace_sum_honours_dtype():
    fast = mlp_xp.get_backend("numpy").xp
    x = np.ones((3, 2), dtype=np.float32)
    assert fast.sum(x, dtype=fast.float64).dtype == np.float64
    assert fast.sum(np.ones(3, dtype=np.int8)).dtype == fast.sum(np.ones(3, dtype=np.int64)).dtype


def test_jax_backend_multiplies_matrices_at_full_precision_unless_the_user_chose():
    """JAX's default on GPUs is TF32 (about 1e-3 relative error in float32 products)."""
    jax = require_module("jax")
    from mlp_xp.backends import jax as jax_backend

    chosen = jax.config.jax_default_matmul_precision
    try:
        jax.config.update("jax_default_matmul_precision", None)
        jax_backend.create("cpu")
        assert jax.config.jax_default_matmul_precision == "highest"
        jax.config.update("jax_default_matmul_precision", "tensorfloat32")
        jax_backend.create("cpu")
        assert jax.config.jax_default_matmul_precision == "tensorfloat32"
    finally:
        jax.config.update("jax_default_matmul_precision", chosen)
