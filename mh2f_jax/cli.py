"""What every command-line tool shares: flag parsing, the error contract, the log policy.

Each tool (``mh2f_jax.train``, ``eval``, ``derain``, ``datasets``) defines its absl
flags in a function and hands it, with its ``main``, to :func:`run`:

* Flags are parsed into a fresh ``FlagValues`` of the tool's own rather than the global
  ``absl.flags.FLAGS``, so that several tools can be imported and run in one process (a
  notebook, the tests) without their flag names clashing.
* A mistake the user can fix (:class:`~mh2f_jax.errors.UserError`, a bad flag, a
  missing or broken config file, and a write refused by the system: full disk, quota,
  read-only mount, permission) prints one ``error: ...`` line and returns exit
  status 2, without a traceback. Anything else is a bug and keeps its traceback.
* Ctrl-C prints one line and returns exit status 130 (files are written atomically, so
  nothing half-written is left).
* Log policy: the tool's own progress goes to stdout (``print``); absl logs go to stderr
  at the tool's level (INFO for training, WARNING otherwise); the package's notes
  (logger ``mh2f_jax``) are shown as ``note: ...``; other libraries' routine lines are
  dropped, their warnings kept (:class:`mh2f_jax.runtime.logs.LibraryFilter`), unless
  the environment sets ``MH2F_LIBRARY_LOGS=1``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
import contextlib
import logging as pylogging
import os
import sys
import threading
from typing import Any

from absl import flags
from absl import logging

from mh2f_jax import files
from mh2f_jax.runtime import host_memory
from mh2f_jax.runtime import logs
from mh2f_jax.errors import UserError

EXIT_USER_ERROR = 2
# As a shell reports a command ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


class _DropWriteFaultTracebacks(pylogging.Filter):
  """Drops the tracebacks Orbax logs when a background save hits a full disk or a
  read-only mount: the same error reaches the tool, which reports it in one line.
  """

  def filter(self, record: pylogging.LogRecord) -> bool:
    return not (record.exc_info and f'{os.sep}orbax{os.sep}' in record.pathname
                and files.is_write_fault(record.exc_info[1]))


@contextlib.contextmanager
def log_policy(level: int = logging.WARNING) -> Iterator[None]:
  """Applies the log policy (see the module docstring) while the block runs.

  The previous settings come back afterwards, so a tool run from a notebook or a test
  leaves the process's logging as it found it.

  Args:
    level: absl level for stderr, e.g. ``absl.logging.INFO``.
  """
  logging.use_absl_handler()
  absl_handler = logging.get_absl_handler()
  root_handlers = [h for h in pylogging.getLogger().handlers if h is not absl_handler]
  previous = (logging.get_verbosity(), flags.FLAGS['stderrthreshold'].value)
  # MH2F_LIBRARY_LOGS=1 shows every library line, as quiet_libraries promises.
  policy_filters = ([] if logs.libraries_shown() else [logs.LibraryFilter()])
  notes = pylogging.getLogger('mh2f_jax')
  note_handler = pylogging.StreamHandler(sys.stderr)
  note_handler.setFormatter(pylogging.Formatter('note: %(message)s'))
  propagate, notes_level = notes.propagate, notes.level
  logging.set_verbosity(level)
  logging.set_stderrthreshold(level)
  fault_filter = _DropWriteFaultTracebacks()
  policy_filters.append(fault_filter)
  for handler in (absl_handler, *root_handlers):
    for f in policy_filters:
      handler.addFilter(f)
  # On the logger too: a record is filtered there whichever handlers print it.
  absl_logger = pylogging.getLogger('absl')
  absl_logger.addFilter(fault_filter)
  thread_hook = threading.excepthook
  threading.excepthook = _thread_hook(thread_hook)
  notes.addHandler(note_handler)
  # The package's notes are warnings, shown whatever level the libraries' logs get.
  notes.setLevel(pylogging.WARNING)
  # Shown once, by this handler, whatever handlers other libraries put on the root.
  notes.propagate = False
  try:
    yield
  finally:
    notes.propagate = propagate
    notes.setLevel(notes_level)
    notes.removeHandler(note_handler)
    threading.excepthook = thread_hook
    absl_logger.removeFilter(fault_filter)
    for handler in (absl_handler, *root_handlers):
      for f in policy_filters:
        handler.removeFilter(f)
    logging.set_verbosity(previous[0])
    logging.set_stderrthreshold(previous[1])


def _thread_hook(previous: Callable[[Any], None]) -> Callable[[Any], None]:
  """A ``threading.excepthook`` that keeps quiet about write faults in threads.

  A background writer that hits a full disk dies with a traceback; the tool reports
  the same fault in one line when the main thread meets it.
  """
  def hook(args: Any) -> None:
    if not files.is_write_fault(args.exc_value):
      previous(args)
  return hook


def define_max_pixels_flag(values: flags.FlagValues, what: str) -> None:
  """Defines --max_pixels, the decoding cap of a tool that reads images (``files.pixel_limit``).

  Args:
    values: the tool's flags.
    what: what the tool does with a larger image, e.g. 'Skip images'.
  """
  flags.DEFINE_integer('max_pixels', files.DEFAULT_MAX_PIXELS, f'{what} declaring more '
                       'pixels than this (read from the header, before decoding); 0: no '
                       'cap.', flag_values=values, lower_bound=0)


def define_distributed_flags(values: flags.FlagValues) -> None:
  """Defines the flags that join a multi-process (multi-host) run; see :func:`init_distributed`."""
  env = os.environ.get
  flags.DEFINE_string('coordinator_address', env('JAX_COORDINATOR_ADDRESS'),
                      'host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS).',
                      flag_values=values)
  flags.DEFINE_integer('num_processes', int(env('JAX_NUM_PROCESSES')) if env(
      'JAX_NUM_PROCESSES') else None, 'Number of processes (default: $JAX_NUM_PROCESSES).',
                       flag_values=values)
  flags.DEFINE_integer('process_id', int(env('JAX_PROCESS_ID')) if env(
      'JAX_PROCESS_ID') else None, 'Index of this process, 0 .. num_processes-1 '
                       '(default: $JAX_PROCESS_ID).', flag_values=values)
  flags.DEFINE_bool('distributed', False, 'Initialise jax.distributed from the cluster '
                    'environment (SLURM, Open MPI, Kubernetes, Cloud TPU) when no '
                    'coordinator is given.', flag_values=values)


def init_distributed(values: flags.FlagValues) -> None:
  """Joins the process group the distributed flags describe; one process needs nothing.

  Raises:
    UserError: some but not all of the three process flags are given.
  """
  given = {'--coordinator_address': values.coordinator_address,
           '--num_processes': values.num_processes, '--process_id': values.process_id}
  if all(v is None for v in given.values()):
    if values.distributed:
      import jax  # pylint: disable=g-import-not-at-top
      jax.distributed.initialize()
    return
  missing = [name for name, v in given.items() if v is None]
  if missing:
    raise UserError(f'multi-process training needs {", ".join(given)}; missing '
                    f'{", ".join(missing)} (flags or JAX_COORDINATOR_ADDRESS, '
                    'JAX_NUM_PROCESSES, JAX_PROCESS_ID)')
  import jax  # pylint: disable=g-import-not-at-top
  jax.distributed.initialize(coordinator_address=values.coordinator_address,
                             num_processes=values.num_processes,
                             process_id=values.process_id)


def _help_text(prog: str, doc: str, values: flags.FlagValues) -> str:
  return f'{doc.strip()}\n\nFlags:\n{values.get_help(include_special_flags=False)}\n'


def run(main: Callable[[flags.FlagValues, Sequence[str]], int | None],
        define_flags: Callable[[flags.FlagValues, Sequence[str]], None],
        argv: Sequence[str] | None = None, *, prog: str, doc: str,
        log_level: int = logging.WARNING, compile_cache: bool = True) -> int:
  """Parses ``argv`` into the tool's flags and runs ``main``; returns the exit status.

  Args:
    main: ``main(flag_values, positional_args)``; returns an exit status or None (0).
    define_flags: ``define_flags(flag_values, argv)`` defines the tool's flags (``argv``
      is what a config flag reads its overrides from).
    argv: the arguments without the program name; None reads ``sys.argv[1:]``.
    prog: the program name for messages.
    doc: the tool's help text (``--help`` prints it and the flags).
    log_level: absl level of the logs shown on stderr.
    compile_cache: turn JAX's persistent compilation cache on (``mh2f_jax.runtime.compile_cache``:
      a per-user folder, ``MH2F_COMPILATION_CACHE=DIR`` or ``off``).

  Returns:
    ``main``'s status, 0 for ``--help``, 2 for a user error, 130 after Ctrl-C.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  values = flags.FlagValues()
  full_argv = [prog, *argv]
  define_flags(values, full_argv)
  if any(a in ('-h', '--help', '-help', '--helpfull') for a in argv):
    print(_help_text(prog, doc, values))
    return 0
  try:
    positional = values(full_argv)[1:]
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    # Parsing reads only the command line and the config file the user named, so every
    # failure here is the user's to fix (ml_collections raises AttributeError for an
    # unknown config field, with a "did you mean" hint).
    print(f'error: {_first_line(e)} (see {prog} --help)', file=sys.stderr)
    return EXIT_USER_ERROR
  # Grain reads its options from the global absl flags, which nothing else parses.
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  try:
    with log_policy(log_level):
      logging.info('host memory: %s', host_memory.keep_freed_memory())  # Before JAX runs.
      if compile_cache:
        from mh2f_jax.runtime import compile_cache as cache_lib  # pylint: disable=g-import-not-at-top
        logging.info('compilation cache: %s', cache_lib.enable() or 'off')
      status = main(values, positional)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return EXIT_USER_ERROR
  except KeyboardInterrupt:
    # Ctrl-C: files are written atomically, so what was finished is complete and what
    # was being written is not there at all; a traceback would say nothing more.
    print(f'{prog}: interrupted', file=sys.stderr)
    return EXIT_INTERRUPTED
  except Exception as e:  # pylint: disable=broad-except  (re-raised unless a write fault)
    # A full disk, a quota, a read-only mount, a denied write: the user's to fix.
    if not files.is_write_fault(e):
      raise
    where = 'a file (the system did not say which)'
    print(f'error: {files.describe_write_fault(e, where)}', file=sys.stderr)
    return EXIT_USER_ERROR
  return 0 if status is None else int(status)


def _first_line(error: Exception) -> str:
  """A flag error on one line; for a config file that failed, its exception's message."""
  text = str(error).strip()
  if isinstance(error, (AttributeError, KeyError)):
    # ml_collections quotes the message ("'featurs'\nDid you mean ...").
    text = text.strip('\'"').replace('\\n', '\n').replace("\\'", "'")
    text = f'unknown config field {text}'
  head, _, trace = text.partition('Traceback (most recent call last):')
  message = ' '.join(line.strip() for line in head.splitlines() if line.strip())
  if trace.strip():
    # ml_collections puts the config file's traceback in the message: keep its last line
    # ("ValueError: unknown config variant ..."), without the exception's type.
    cause = trace.strip().splitlines()[-1].strip()
    message = f'{message.rstrip(":")}: {cause.split(": ", 1)[-1]}'
  return message


def exit_with(status: int) -> None:
  """Ends a console-script process with ``status`` (flushing stdout and stderr).

  After a user error or Ctrl-C, the ``error:`` or ``interrupted`` line is the tool's last
  word: background threads that a failed write or the interruption left behind (Orbax's,
  whose event loop is closed under them) may print tracebacks while the interpreter shuts
  down, saying nothing the line did not, so stderr is closed first.
  """
  sys.stdout.flush()
  sys.stderr.flush()
  if status in (EXIT_USER_ERROR, EXIT_INTERRUPTED):
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
  sys.exit(status)


def define_model_flags(values: flags.FlagValues) -> None:
  """Defines --workdir and --model, the two ways to name a model (derain, the web page)."""
  flags.DEFINE_string('workdir', None, 'Training workdir (config.json and checkpoints/); '
                      'or give --model.', flag_values=values)
  flags.DEFINE_string('model', None, 'A model file written by mh2f-export (.onnx, or a '
                      'jax.export artifact) instead of --workdir; large photos are tiled '
                      'with --tiling=approx.', flag_values=values)


def load_derainer(values: flags.FlagValues, **settings: Any) -> Any:
  """The derainer that --workdir or --model names, with the tiling flags applied.

  Args:
    values: parsed flags from :func:`define_model_flags` and the tiling flags (--tile,
      --overlap, and where defined --tiling, --checkpoint, --params, --backend).
    **settings: further derainer settings (e.g. ``self_ensemble``).

  Returns:
    What ``inference.photo_run.load_derainer`` returns.

  Raises:
    UserError: neither or both of --workdir and --model, a workdir-only flag given with
      --model, or a model that cannot be loaded.
  """
  from mh2f_jax.inference import photo_run  # pylint: disable=g-import-not-at-top  (fast --help)
  given = lambda name: name in values and values[name].present
  if values.model is not None:
    for name in ('checkpoint', 'params', 'backend'):
      if given(name):
        raise UserError(f'--{name} applies to --workdir, not to --model')
  for name, setting in (('tile', 'tile_size'), ('overlap', 'tile_overlap'),
                        ('checkpoint', 'checkpoint'), ('params', 'params'),
                        ('backend', 'backend')):
    if name in values and values[name].value is not None:
      settings[setting] = values[name].value
  if given('tiling'):
    settings['tiling'] = values.tiling
  return photo_run.load_derainer(workdir=values.workdir, model=values.model, **settings)


def describe_derainer(values: flags.FlagValues, derainer: Any) -> str:
  """What :func:`load_derainer` loaded, for the first line of a tool's output."""
  from mh2f_jax.inference import photo_run  # pylint: disable=g-import-not-at-top
  return photo_run.describe(derainer, workdir=values.workdir, model=values.model)
