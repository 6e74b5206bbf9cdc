"""The paper's own reported numbers (MH2F-Net, CVPRW 2021, Table 2), for side-by-side reports.

X. Chen, Y. Huang, L. Xu, "Multi-Scale Hourglass Hierarchical Fusion Network for Single
Image Deraining", CVPR Workshops (UG2+) 2021, pp. 872-879, arXiv:2104.12100.

Table 2 gives PSNR/SSIM of MH2F-Net ("Ours") and of the rainy input on four test sets.
The paper does not say which metric protocol produced them (Y channel or RGB, rounding,
SSIM variant), so a measured row is comparable only up to that unknown; evaluation
reports always label these rows as the paper's reported numbers. Every other dataset
this project reads (Rain100L/H, Rain12, Rain13K, paired folders, synthetic rain) has no
row in the paper.
"""

import dataclasses

CITATION = ('Chen, Huang & Xu, "Multi-Scale Hourglass Hierarchical Fusion Network for '
            'Single Image Deraining", CVPRW 2021, Table 2')


@dataclasses.dataclass(frozen=True)
class Table2Row:
  """One dataset's column of the paper's Table 2.

  Attributes:
    dataset: TFDS builder name used in this project (e.g. 'rain200h').
    display_name: the name the paper prints (e.g. 'Rain200H').
    psnr: MH2F-Net PSNR (dB).
    ssim: MH2F-Net SSIM.
    input_psnr: PSNR of the rainy input.
    input_ssim: SSIM of the rainy input.
    test_images: size of the test set per the paper's Table 1.
  """
  dataset: str
  display_name: str
  psnr: float
  ssim: float
  input_psnr: float
  input_ssim: float
  test_images: int


# Values typed from the paper's Table 2 (columns "Input" and "Ours") and Table 1 (test
# counts).
TABLE2: dict[str, Table2Row] = {
    row.dataset: row for row in (
        Table2Row('rain200l', 'Rain200L', 38.54, 0.9880, 26.70, 0.8438, 200),
        Table2Row('rain200h', 'Rain200H', 28.35, 0.9217, 13.07, 0.3733, 200),
        Table2Row('rain1400', 'Rain1400', 33.51, 0.9549, 25.24, 0.8097, 1400),
        Table2Row('spa_data', 'SPA-Data', 42.72, 0.9876, 34.15, 0.9269, 1000),
    )
}


def _base_name(dataset: str) -> str:
  """'Rain200H' or 'rain200h/1.0.0' or 'synthetic_rain/heavy' -> the builder name."""
  return dataset.strip().lower().split('/')[0].split(':')[0]


def table2_row(dataset: str) -> Table2Row | None:
  """The paper's Table 2 column for a dataset.

  Args:
    dataset: a dataset name as in ``config.data.dataset`` (a builder name, optionally
      with a '/config' or version suffix; case-insensitive).

  Returns:
    The row, or None when the paper reports nothing for that dataset.
  """
  return TABLE2.get(_base_name(dataset))


def reported_datasets() -> list[str]:
  """The display names of the datasets the paper reports, in Table 2's order."""
  return [row.display_name for row in TABLE2.values()]


def not_reported_note(dataset: str) -> str:
  """A sentence saying the paper has no numbers for ``dataset``.

  Args:
    dataset: the dataset name.

  Returns:
    One sentence, naming the datasets the paper does report.
  """
  return (f'The paper reports no numbers for `{dataset}`; its Table 2 covers only '
          f'{", ".join(reported_datasets())}.')
