"""Complex, masked, object and string arrays are refused with TypeError at every entry
point, with a message naming what was passed and what is accepted; none is silently
cast (which would drop an imaginary part or ignore a mask)."""

import numpy as np
import pytest

import pullback as pb

ACCEPTED = "float64, float32, integer and bool arrays"

WIDE = np.dtype(np.longdouble)
"""A float wider than 64 bits where the platform has one (80/128-bit longdouble)."""
HAS_WIDE = WIDE.itemsize > 8
BAD = {
    "complex": np.array([1.0 + 2.0j, 3.0]),
    "masked": np.ma.masked_array([1.0, 2.0], mask=[False, True]),
    "object": np.array([1.0, 2.0], dtype=object),
    "string": np.array(["a", "b"]),
    **({"longdouble": np.array([1.0, 2.0], dtype=WIDE)} if HAS_WIDE else {}),
}
NAMES = {"complex": "complex", "masked": "masked", "object": "object", "string": "<U1",
         "longdouble": str(WIDE)}


def _refused(kind: str):
    return pytest.raises(TypeError, match=f"(?s){NAMES[kind]}.*{ACCEPTED}")


def _loss(x):
    return pb.sum(x * x)


@pytest.fixture(params=sorted(BAD))
def kind(request):
    return request.param


@pytest.mark.parametrize("api", ["gradient", "withgradient", "pullback", "jacobian",
                                 "diaghessian"])
def test_traced_arguments(kind, api):
    with _refused(kind):
        getattr(pb, api)(_loss, BAD[kind])


def test_hessian_argument(kind):
    with _refused(kind):
        pb.hessian(_loss, BAD[kind])


@pytest.mark.parametrize("mode", ["value", "gradient", "pullback", "jacobian"])
def test_compile_example_arguments(kind, mode):
    with _refused(kind):
        pb.compile(_loss, BAD[kind], mode=mode)


@pytest.mark.parametrize("mode", ["value", "gradient", "jacobian"])
def test_compiled_calls(kind, mode):
    c = pb.compile(_loss, np.ones(2), mode=mode)
    with _refused(kind):
        c(BAD[kind])


def test_closed_over_arrays(kind):
    bad = BAD[kind]
    with _refused(kind):
        pb.gradient(lambda x: pb.sum(x * bad), np.ones(2))


def test_params_and_pb_array(kind):
    with _refused(kind):
        pb.array(BAD[kind])
    if kind != "masked":  # a masked array cannot be viewed as pb.Array
        with _refused(kind):
            pb.Params([BAD[kind].view(pb.Array)])


@pytest.mark.parametrize("kind", [k for k in BAD if k != "masked"])
def test_buffer_element_type(kind):
    """Buffer(xs, n) uses only the element type of xs (a masked float64 array has an
    accepted one), so every other refused kind is refused there."""
    with _refused(kind):
        pb.Buffer(BAD[kind], 3)


def test_complex_cotangent_is_refused_not_cast():
    y, back = pb.pullback(lambda x: x * 2.0, np.ones(2))
    with pytest.raises(TypeError, match=f"complex.*{ACCEPTED}"):
        back(np.array([1.0 + 1.0j, 0.0]))
    with pytest.raises(TypeError, match=f"complex.*{ACCEPTED}"):
        back(np.array([1.0, 1.0j])[0] + 1j)
    c = pb.compile(lambda x: x * 2.0, np.ones(2), mode="pullback")
    _, back = c(np.ones(2))
    with pytest.raises(TypeError, match=f"masked.*{ACCEPTED}"):
        back(np.ma.masked_array([1.0, 2.0], mask=[True, False]))


def test_complex_scalars_are_refused():
    with pytest.raises(TypeError, match=f"complex.*{ACCEPTED}"):
        pb.gradient(lambda z: z * 2, 1 + 2j)
    with pytest.raises(TypeError, match=f"complex.*{ACCEPTED}"):
        pb.gradient(lambda z: z * 2, np.complex128(1 + 2j))


def test_float16_is_converted_to_float32():
    """float16 arrays are traced as float32, and their derivatives are float32."""
    x = np.array([1.0, 2.0], dtype=np.float16)
    (g,) = pb.gradient(_loss, x)
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, [2.0, 4.0])


def test_uint64_beyond_int64_is_refused():
    with pytest.raises(TypeError, match="uint64"):
        pb.compile(lambda i: i * 2, np.array([2 ** 63], dtype=np.uint64), mode="value")


def test_numpy_string_scalars_are_passed_unchanged():
    assert pb.gradient(lambda x, s: x * len(s), 2.0, np.str_("abc")) == (3.0, None)


def test_wide_float_scalars_are_refused():
    """A longdouble scalar is refused where it is wider than float64, and is float64
    (accepted) where it is not."""
    if not HAS_WIDE:
        assert pb.gradient(lambda x: x * 2, np.longdouble(2)) == (2.0,)
        return
    with pytest.raises(TypeError, match=f"numpy scalar of dtype {WIDE}.*{ACCEPTED}"):
        pb.gradient(lambda x: x * 2, np.longdouble(2))
