"""Receptive fields of MH2F-Net's stages: how much context exact tiling needs.

The tiled forward pass (:mod:`mh2f_jax.inference.tiling`) runs the network stage by
stage over windows; this module, beside the blocks it describes, says how far each
stage's output depends on its input. It restates the structure of
:class:`mh2f_jax.model.blocks.MHEB`, ``HADB``'s units and the fusions as row intervals;
``tests/inference/test_tiling.py`` checks every margin against the gradient support of
the real modules for each model variant, so a change on either side fails there.
"""

from collections.abc import Callable

from mh2f_jax.model import network

# The network pads to this multiple itself; tiles and margins align to it.
ALIGN = network.PAD_MULTIPLE
# Radius of the network's 3x3 convs and of HADB's 7x7 spatial-attention conv.
_CONV3_RADIUS = 1
_SA_CONV_RADIUS = 3
# 3x3 convs between (Le, Ld) and Ls in each fusion (model.RPFF: conv_r, conv_f, conv_o;
# AddFusion: conv_o; ConcatFusion: 1x1 project, then conv_o). Lo only meets conv_o.
_FUSION_CONV3_DEPTH = {'rpff': 3, 'add': 1, 'concat': 1}


def align_up(n: int, multiple: int = ALIGN) -> int:
  """``n`` rounded up to a multiple of ``multiple``."""
  return -(-n // multiple) * multiple


def _mheb_interval(lo: int, hi: int, layers: int) -> tuple[int, int]:
  """Input rows (full scale) that MHEB output rows ``[lo, hi]`` depend on.

  Follows ``model.MHEB.__call__``: a DCR of ``layers`` chained 3x3 convs widens a range
  by ``layers`` at its own scale; a 2x2 pool maps half-scale row ``j`` to rows ``2j,
  2j+1``; nearest upsampling maps row ``i`` to half-scale row ``i // 2``.
  """
  dcr = lambda a, b: (a - layers, b + layers)
  pool = lambda a, b: (2 * a, 2 * b + 1)   # coarse rows -> the finer rows they pool
  up = lambda a, b: (a // 2, b // 2)       # fine rows -> the coarse rows they copy
  union = lambda *ivs: (min(i[0] for i in ivs), max(i[1] for i in ivs))
  d1_from_x = lambda a, b: pool(*dcr(a, b))  # d1 = down1(pool2(x))
  a, b = dcr(lo, hi)                          # out(s0 + up2(u1))
  s0 = dcr(a, b)                              # s0 = skip0(x)
  c, d = dcr(*up(a, b))                       # u1 = up1(s1 + up2(d2))
  via_s1 = d1_from_x(*dcr(c, d))              # s1 = skip1(d1)
  via_d2 = d1_from_x(*pool(*dcr(*up(c, d))))  # d2 = bottom(pool2(d1))
  return union(s0, via_s1, via_d2)


def _reach(interval: Callable[[int, int], tuple[int, int]]) -> int:
  """Farthest input row from an output row, over the 4 pixel phases of the pool grid."""
  return max(max(p - interval(p, p)[0], interval(p, p)[1] - p) for p in range(ALIGN))


def stage_margins(model: network.MH2FNet) -> dict[str, int]:
  """Context (pixels, a multiple of 4) each stage needs around its output tile.

  Derived from the modules' structure: the receptive-field radius of each stage, rounded
  up to a multiple of 4 (tile windows must stay on the pooling grid).

  Args:
    model: the network.

  Returns:
    ``{'head', 'mheb', 'unit', 'final'}`` for the HADB model; ``{'model'}`` (the whole
    network as one stage) for a model without HADB.
  """
  layers = model.dcr_layers
  # From Le (and Ld) through the fusion and the 3x3 tail; from the image through head,
  # conv_o and tail.
  from_le = (_FUSION_CONV3_DEPTH[model.fusion] + 1) * _CONV3_RADIUS
  fusion = max(from_le, 3 * _CONV3_RADIUS)
  if model.distill != 'hadb':
    def whole(lo, hi):
      lo, hi = lo - from_le, hi + from_le
      for _ in range(model.num_blocks):
        lo, hi = _mheb_interval(lo, hi, layers)
      return lo - _CONV3_RADIUS, hi + _CONV3_RADIUS  # head
    return {'model': align_up(_reach(whole))}
  return {
      'head': align_up(_CONV3_RADIUS),
      'mheb': align_up(_reach(lambda lo, hi: _mheb_interval(lo, hi, layers))),
      'unit': align_up(_SA_CONV_RADIUS),  # head, merge, end are 1x1; sa_conv is 7x7
      'final': align_up(fusion),
  }
