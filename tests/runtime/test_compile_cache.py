"""Tests for mh2f_jax.runtime.compile_cache: where the cache goes, and that it is used."""

import jax
import jax.numpy as jnp
import pytest

from mh2f_jax.runtime import compile_cache


@pytest.fixture
def restore_jax_cache_config():
  """Puts JAX's cache settings back after a test that changed them."""
  names = ('jax_enable_compilation_cache', 'jax_compilation_cache_dir',
           'jax_persistent_cache_min_compile_time_secs',
           'jax_persistent_cache_min_entry_size_bytes')
  saved = {name: getattr(jax.config, name) for name in names}
  yield
  for name, value in saved.items():
    jax.config.update(name, value)
  compile_cache.jax_cache.reset_cache()


def test_directory_comes_from_the_environment_then_xdg(monkeypatch, tmp_path):
  monkeypatch.setenv(compile_cache.ENV_VAR, str(tmp_path / 'mine'))
  assert compile_cache.resolve_dir() == str(tmp_path / 'mine')
  for off in ('off', 'OFF', '0', 'none'):
    monkeypatch.setenv(compile_cache.ENV_VAR, off)
    assert compile_cache.resolve_dir() is None
  monkeypatch.delenv(compile_cache.ENV_VAR)
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert compile_cache.default_dir() == str(tmp_path / 'xdg' / 'mh2f_jax' / 'jax_cache')
  assert compile_cache.resolve_dir('~/elsewhere') == str(
      __import__('pathlib').Path('~/elsewhere').expanduser())


def test_enabled_cache_stores_and_reuses_executables(tmp_path, restore_jax_cache_config):
  hits = []
  listener = lambda event, **kwargs: hits.append(event)
  jax.monitoring.register_event_listener(listener)
  try:
    assert compile_cache.enable(str(tmp_path)) == str(tmp_path)
    f = lambda x: jnp.sin(x) * 3.0 + 1.25  # quick to compile: cached all the same
    x = jnp.arange(7.0)
    expected = jax.jit(f)(x)
    assert any(tmp_path.iterdir())
    jax.clear_caches()  # forget the in-memory executable, as a new process would
    hits.clear()
    assert jnp.array_equal(jax.jit(f)(x), expected)
    assert '/jax/compilation_cache/cache_hits' in hits
  finally:
    jax.monitoring.unregister_event_listener(listener)


def test_off_writes_nothing(tmp_path, monkeypatch, restore_jax_cache_config):
  monkeypatch.setenv(compile_cache.ENV_VAR, 'off')
  jax.config.update('jax_compilation_cache_dir', str(tmp_path))
  assert compile_cache.enable() is None
  jax.jit(lambda x: x * 5.5 - 2.0)(jnp.arange(3.0)).block_until_ready()
  assert not any(tmp_path.iterdir())


def test_unusable_directory_turns_the_cache_off(tmp_path, restore_jax_cache_config):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  assert compile_cache.enable(str(blocker / 'cache')) is None
  assert not jax.config.jax_enable_compilation_cache
