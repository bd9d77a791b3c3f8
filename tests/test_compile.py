"""`spmle._internal.compiled`: filter-jit semantics with per-program options."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from spmle._internal._compile import _options, compiled


class _Scale(eqx.Module):
    factor: float
    offset: jax.Array


def test_compiled_traces_once_per_static_value_and_inlines_under_jit():
    traces = []

    @compiled
    def f(module, x, *, power):
        traces.append(power)
        return {"y": module.factor * x**power + module.offset}

    x = jnp.arange(3.0)
    out = f(_Scale(2.0, jnp.array(1.0)), x, power=2)
    np.testing.assert_allclose(out["y"], 2.0 * np.arange(3.0) ** 2 + 1.0)
    # Equal static fields (by value) and new array values: no new trace.
    f(_Scale(2.0, jnp.array(5.0)), x + 1, power=2)
    assert traces == [2]
    f(_Scale(3.0, jnp.array(1.0)), x, power=2)  # another static value
    f(_Scale(2.0, jnp.array(1.0)), x, power=3)
    assert traces == [2, 2, 3]
    # Under an outer jit it simply inlines (nested compiler options are refused).
    inner = jax.jit(lambda x: f(_Scale(2.0, jnp.array(1.0)), x, power=2)["y"])(x)
    np.testing.assert_allclose(inner, out["y"])


def test_cpu_programs_ask_for_the_classic_emitters():
    # Other backends get XLA's defaults; this JAX's CPU compiler knows the option
    # (if a later one drops it, spmle falls back to the defaults and this test
    # says that the compile-time measurements in docs/inference.md are stale).
    assert _options("gpu") == ()
    assert dict(_options("cpu")) == {"xla_cpu_use_fusion_emitters": False}
