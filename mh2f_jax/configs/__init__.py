"""The shipped training configs, and the ``--config`` flag that finds them by name.

Every config is a Python file with ``get_config(arg=None)``; ``arg`` is the variant after a
colon (``debug``). The files live in this package so that an installed copy of mh2f-jax
has them; in a checkout, ``configs/`` at the repository root is the same folder.

``--config`` takes a file path, as ``ml_collections.config_flags`` does
(``--config=configs/rain200l.py:debug``, or a config of your own), or the name of a
shipped config (``--config=rain200l:debug``). An existing file always wins over a name.
A tuple field's override may also be plain comma-separated words
(``--config.init_from_skip=rpff/*,fusion_add/*``), as well as a Python tuple.
"""

import os

from absl import flags
from ml_collections import config_flags
from ml_collections.config_flags import tuple_parser

_FOLDER = os.path.dirname(os.path.abspath(__file__))


def names() -> list[str]:
  """The shipped configs' names, sorted (``default``, ``rain200l``, ``synthetic``, ...)."""
  return sorted(f[:-3] for f in os.listdir(_FOLDER)
                if f.endswith('.py') and not f.startswith('_'))


def config_path(spec: str) -> str:
  """Turns ``NAME[:variant]`` into ``PATH[:variant]`` when NAME is a shipped config.

  Args:
    spec: what was given to ``--config``: a file path or a shipped config's name (with or
      without ``.py``), either one optionally followed by ``:variant``.

  Returns:
    ``spec`` unchanged when its file part exists, else the shipped config's absolute
    path with the same variant.

  Raises:
    ValueError: neither an existing file nor a shipped config, naming the shipped ones.
  """
  path, colon, variant = spec.partition(':')
  if os.path.isfile(path):
    return spec
  name = path[:-3] if path.endswith('.py') else path
  if name in names():
    return os.path.join(_FOLDER, name + '.py') + colon + variant
  raise ValueError(f'config {path} is not a file, nor a shipped config (shipped: '
                   f'{", ".join(names())}; e.g. --config=synthetic:debug)')


class _NamedConfigParser(flags.ArgumentParser):
  """Wraps ``config_flags``' file parser: resolves a shipped config's name first."""

  def __init__(self, file_parser: flags.ArgumentParser):
    self._file_parser = file_parser

  def parse(self, argument):
    return self._file_parser.parse(config_path(argument))

  def flag_type(self):
    return self._file_parser.flag_type()


class _TupleOrWordsParser(tuple_parser.TupleParser):
  """ml_collections' tuple parser, which also reads ``a/*,b/*`` as ``('a/*', 'b/*')``.

  Its own parser refuses unquoted words that are not Python (``rpff/*`` is a syntax
  error) once they hold a comma; only such otherwise refused text is read as words.
  """

  def parse(self, argument):
    try:
      return super().parse(argument)
    except ValueError:
      words = [w.strip() for w in argument.split(',')] if isinstance(argument, str) else []
      if (not words or any(not w or len(w.split()) > 1 for w in words)
          or any(c in argument for c in '\'"()[]')):
        raise
      return tuple(words)


def define_flag(name: str, help_string: str, flag_values: flags.FlagValues = flags.FLAGS,
                lock_config: bool = True, **kwargs) -> flags.FlagHolder:
  """Defines a config-file flag that also accepts the shipped configs' names.

  It is ``config_flags.DEFINE_config_file`` (field overrides such as
  ``--config.batch_size=32`` included) with the file lookup extended by :func:`resolve`.

  Args:
    name: the flag's name, e.g. ``'config'``.
    help_string: its help text.
    flag_values: the ``FlagValues`` to register it in.
    lock_config: lock the loaded config, so a misspelt override is an error.
    **kwargs: passed on to ``DEFINE_config_file`` (e.g. ``sys_argv``).

  Returns:
    The flag's holder; ``.value`` is the loaded ``ConfigDict``.
  """
  # Used by every tuple field override from here on (ml_collections keeps one parser
  # per type); it accepts everything the library's parser does.
  config_flags.register_flag_parser_for_type(tuple, _TupleOrWordsParser())
  holder = config_flags.DEFINE_config_file(name, None, help_string, flag_values,
                                           lock_config=lock_config, **kwargs)
  flag = flag_values[name]
  flag.parser = _NamedConfigParser(flag.parser)
  return holder


def get_config(spec: str):
  """Loads a config as ``--config=SPEC`` does, for notebooks and scripts.

  Args:
    spec: a file path or shipped name, optionally with ``:variant``.

  Returns:
    The (unlocked) ``ConfigDict``.

  Raises:
    ValueError: an unknown config (see :func:`resolve`).
  """
  argv = ['mh2f', f'--config={config_path(spec)}']
  values = flags.FlagValues()
  define_flag('config', 'config', values, lock_config=False, sys_argv=argv)
  values(argv)
  return values.config
