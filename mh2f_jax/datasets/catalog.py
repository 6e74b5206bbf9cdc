"""The benchmarks: where people get them, their layouts, rules and published counts.

The layouts and rules follow the copies in circulation (see docs/data.md): the official
PKU archive of Rain200H/L and the EDSR, DRSformer and IDT re-packagings of it; PReNet's
packaging of the old Rain100H/L and Rain12; Fu et al.'s DDN-Data (Rain1400); SPA-Data's
list file and test folder; the Rain13K collection of MPRNet/Restormer. This module does
not import TensorFlow Datasets.
"""

from __future__ import annotations

from mh2f_jax.datasets import layouts
from mh2f_jax.datasets import pairing
from mh2f_jax.datasets import spa_layouts
from mh2f_jax.datasets.layouts import FolderLayout
from mh2f_jax.datasets.layouts import FolderPair

TRAIN, TEST = layouts.TRAIN_DIRS, layouts.TEST_DIRS

_PKU = 'http://www.icst.pku.edu.cn/struct/Projects/joint_rain_removal.html'

_JORDER_CITATION = """@inproceedings{yang2017deep,
  title={Deep joint rain detection and removal from a single image},
  author={Yang, Wenhan and Tan, Robby T. and Feng, Jiashi and Liu, Jiaying and
          Guo, Zongming and Yan, Shuicheng},
  booktitle={CVPR},
  year={2017}
}"""


def _rain200(variant: str) -> layouts.DatasetSpec:
  word = {'h': 'heavy', 'l': 'light'}[variant]
  big = variant.upper()
  same = pairing.SAME_STEM
  return layouts.DatasetSpec(
      name=f'rain200{variant}',
      title=(f'Rain200{big}: JORDER {word} set, re-released (1800 train / 200 test; also '
             f'called "new Rain100{big}" and Rain{word.capitalize()}*)'),
      source=(f'the {word} set ("rain_data_train_{word.capitalize()}", '
              f'"rain_{word}_test") from the JORDER project page {_PKU}; renamed copies '
              'come with DRSformer (github.com/cschenxiang/DRSformer), RCDNet / JORDER-E '
              '(github.com/hongwang01/RCDNet) and IDT (github.com/jiexiaou/IDT).'),
      splits=('train', 'test'),
      split_dirs={'train': TRAIN + (f'rain_data_train_{word.capitalize()}',),
                  'test': TEST + (f'rain_{word}_test', f'rain_data_test_{word.capitalize()}')},
      aliases=(f'Rain200{big}', f'Rain{word.capitalize()}'),
      layouts=(
          FolderLayout(
              'A', 'official PKU archive',
              ('<split>/rain/norain-{N}x2.png (or <split>/rain/X2/norain-{N}x2.png)',
               '<split>/norain/norain-{N}.png        rule: ' + pairing.STRIP_X2.description),
              (FolderPair(('rain/X2', 'rain'), ('norain',), pairing.STRIP_X2,
                          containers=('', '@dataset')),)),
          FolderLayout(
              'B', 'EDSR-style copies (JORDER-E, RCDNet, SPDNet, HCT-FFN)',
              ('<split>/[small/]rain/norain-{N}.png + <split>/[small/]norain/norain-{N}.png',
               '(or data/ + label/)                  rule: same file name'),
              (FolderPair(('rain',), ('norain',), same, containers=('small', '', '@dataset')),
               FolderPair(('data',), ('label',), same, containers=('small', '', '@dataset')))),
          FolderLayout(
              'C', 'DRSformer / BasicSR copies',
              (f'<split>/Rain200{big}/input/{{k}}.png + <split>/Rain200{big}/target/{{k}}.png',
               '(or <split>/input + <split>/target)  rule: same file name'),
              (FolderPair(('input',), ('target',), same, containers=('@dataset', '')),)),
          FolderLayout(
              'D', 'IDT renamed copies',
              ('<split>/input/rain-{N}.png + <split>/groundtruth/norain-{N}.png',
               'rule: ' + pairing.RAIN_TO_NORAIN.description),
              (FolderPair(('input',), ('groundtruth',), pairing.RAIN_TO_NORAIN),)),
      ),
      published={'train': (1800,), 'test': (200,)},
      homepage=_PKU,
      citation=_JORDER_CITATION,
  )


def _rain100(variant: str) -> layouts.DatasetSpec:
  big = variant.upper()
  same = pairing.SAME_STEM
  train_count = (1800, 1254) if variant == 'h' else (200,)
  return layouts.DatasetSpec(
      name=f'rain100{variant}',
      title=(f'Rain100{big} (old JORDER release, as packaged by PReNet: train '
             f'"RainTrain{big}", test "Rain100{big}")'),
      source=('PReNet\'s "datasets" download (github.com/csdwren/PReNet, README and '
              f'datasets/readme.txt): RainTrain{big} and Rain100{big}; RCDNet '
              '(github.com/hongwang01/RCDNet) distributes an EDSR-style copy.'),
      splits=('train', 'test'),
      split_dirs={'train': TRAIN + (f'RainTrain{big}',),
                  'test': TEST + (f'Rain100{big}', f'test_Rain100{big}')},
      aliases=(f'Rain100{big}',),
      # PReNet's readme puts RainTrainX under train/ and Rain100X under test/.
      split_containers={'train': (f'RainTrain{big}',), 'test': (f'Rain100{big}',)},
      layouts=(
          FolderLayout(
              'P', 'PReNet packaging',
              (f'train: RainTrain{big}/rain-{{N}}.png + RainTrain{big}/norain-{{N}}.png '
               '(one folder)',
               f'test:  Rain100{big}/rainy/rain-{{NNN}}.png + Rain100{big}/norain-{{NNN}}.png',
               'rule: ' + pairing.RAIN_TO_NORAIN.description
               + ('; clean images without a rainy one are skipped (PReNet keeps 1254)'
                  if variant == 'h' else '')),
              (FolderPair(('',), ('',), pairing.RAIN_TO_NORAIN, containers=('', '@split'),
                          rainy_filter=layouts.prefix('rain-'),
                          clean_filter=layouts.prefix('norain-'),
                          allow_unused_clean=variant == 'h'),
               FolderPair(('rainy', 'rain'), ('', 'norain'), pairing.RAIN_TO_NORAIN,
                          containers=('', '@split'), clean_filter=layouts.prefix('norain-')))),
          FolderLayout(
              'B', 'EDSR-style copies (RCDNet, JORDER-E)',
              (f'rain100{big}/<split>/[small/]rain/norain-{{N}}.png + '
               '.../[small/]norain/norain-{N}.png', 'rule: same file name'),
              (FolderPair(('rain',), ('norain',), same, containers=('small', '')),)),
          FolderLayout(
              'C', 'input/target copies',
              (f'<split>/[Rain100{big}/]input/{{k}}.png + <split>/[Rain100{big}/]target/{{k}}.png',
               'rule: same file name'),
              (FolderPair(('input',), ('target',), same, containers=('@dataset', '')),)),
      ),
      published={'train': train_count, 'test': (100,)},
      homepage='https://github.com/csdwren/PReNet',
      citation=_JORDER_CITATION,
  )


RAIN200L = _rain200('l')
RAIN200H = _rain200('h')
RAIN100L = _rain100('l')
RAIN100H = _rain100('h')

RAIN12 = layouts.DatasetSpec(
    name='rain12',
    title='Rain12 (Li et al., CVPR 2016): 12 test pairs, no training set',
    source=('PReNet\'s "datasets" download (github.com/csdwren/PReNet): folder test12; or '
            'the original zip http://yu-li.github.io/paper/li_cvpr16_rain.zip.'),
    splits=('test',),
    split_dirs={'test': ('test12', 'Rain12') + TEST},
    aliases=('Rain12', 'li_cvpr16_rain'),
    root_split='test',
    split_containers={'test': ('test12', 'Rain12')},
    layouts=(
        FolderLayout(
            'P', 'PReNet / BRN package',
            ('test12/rainy/{N}.png + test12/groundtruth/{N}.png', 'rule: same file name'),
            (FolderPair(('rainy',), ('groundtruth',), pairing.SAME_STEM,
                        containers=('', '@split')),)),
        FolderLayout(
            'L', 'original zip of Li et al.',
            ('{NNN}_in.png + {NNN}_GT.png in one folder',
             'rule: ' + pairing.IN_TO_GT.description),
            (FolderPair(('',), ('',), pairing.IN_TO_GT, containers=('', '@split'),
                        rainy_filter=layouts.suffix('_in'),
                        clean_filter=layouts.suffix('_gt')),)),
    ),
    published={'test': (12,)},
    homepage='https://github.com/csdwren/PReNet',
    citation="""@inproceedings{li2016rain,
  title={Rain streak removal using layer priors},
  author={Li, Yu and Tan, Robby T. and Guo, Xiaojie and Lu, Jiangbo and Brown, Michael S.},
  booktitle={CVPR},
  year={2016}
}""",
)

_DDN_RULE = pairing.BEFORE_FIRST_UNDERSCORE
RAIN1400 = layouts.DatasetSpec(
    name='rain1400',
    title='Rain1400 / DDN-Data (Fu et al., CVPR 2017): 1000 clean images x 14 rain versions',
    source=('DDN-Data from the DDN project page https://xueyangfu.github.io/projects/'
            'cvpr2017.html; PReNet (github.com/csdwren/PReNet) and RCDNet '
            '(github.com/hongwang01/RCDNet) link copies (Rain12600 = train, Rain1400 = test).'),
    splits=('train', 'test'),
    split_dirs={'train': ('Rain12600',) + TRAIN, 'test': ('Rain1400',) + TEST},
    aliases=('DDN-Data', 'DDN_Data', 'Rain1400', 'DDN'),
    split_containers={'train': ('Rain12600',), 'test': ('Rain1400',)},
    layouts=(
        FolderLayout(
            'F', 'Fu et al. / PReNet',
            ('<split>/rainy_image/{i}_{j}.jpg + <split>/ground_truth/{i}.jpg (j = 1..14)',
             'rule: ' + _DDN_RULE.description),
            (FolderPair(('rainy_image',), ('ground_truth',), _DDN_RULE,
                        containers=('', '@split')),)),
        FolderLayout(
            'O', 'other packagings',
            ('<split>/input/{i}_{j}.* + <split>/gt/{i}.*, or rain/ + norain/, or '
             'input/ + target/', 'rule: ' + _DDN_RULE.description),
            tuple(FolderPair((r,), (c,), _DDN_RULE, containers=('', '@split'))
                  for r, c in (('input', 'gt'), ('rain', 'norain'), ('input', 'target')))),
    ),
    published={'train': (12600,), 'test': (1400,)},
    homepage='https://xueyangfu.github.io/projects/cvpr2017.html',
    citation="""@inproceedings{fu2017removing,
  title={Removing rain from single images via a deep detail network},
  author={Fu, Xueyang and Huang, Jiabin and Zeng, Delu and Huang, Yue and
          Ding, Xinghao and Paisley, John},
  booktitle={CVPR},
  year={2017}
}""",
)

SPA_DATA = layouts.DatasetSpec(
    name='spa_data',
    title='SPA-Data (Wang et al., CVPR 2019): real rain, 638,492 train patches / 1000 test',
    source=('SPANet (github.com/stevewongv/SPANet, Train_Dataset_README.md): '
            'real_world.zip.00-.11 (join and unzip) plus real_world.txt; the test set '
            'real_test_1000 is linked from there and from PReNet / RecDerain.'),
    splits=('train', 'test'),
    split_dirs={'train': TRAIN, 'test': ('real_test_1000',) + TEST},
    aliases=('SPA-Data', 'SPA', 'SPA_Data'),
    layouts=(
        spa_layouts.ListFileLayout(
            'L', 'official list file (train)',
            ('real_world.txt, one "<rainy path> <clean path>" per line, paths relative to '
             'the folder of the list (or the data folder); a leading "/" or "./" is ignored',
             'pairs: as written on each line'),
            'real_world.txt'),
        spa_layouts.SpaFolderLayout(
            'R', 'official folders without the list (train)',
            ('real_world/{V}/{V}-{F}/{V}-{F}_{x}_{y}.png + real_world_gt/{V}/{V}_{x}_{y}.png',
             'rule: drop "-{F}" from the frame folder and the file name'),
        ),
        FolderLayout(
            'T', 'official test folder',
            ('real_test_1000/rain/{NNN}.png + real_test_1000/gt/{NNN}gt.png',
             'rule: ' + pairing.APPEND_GT.description),
            (FolderPair(('rain',), ('gt',), pairing.APPEND_GT),), splits=('test',)),
        FolderLayout(
            'N', 'renamed copies (IDT, DRSformer)',
            ('<split>/[SPA/]input/{k}.png + <split>/[SPA/]groundtruth/{k}.png '
             '(or target/)', 'rule: same file name'),
            (FolderPair(('input',), ('groundtruth', 'target'), pairing.SAME_STEM,
                        containers=('@dataset', '')),)),
    ),
    # IDT's renamed copy holds 638,464 training pairs.
    published={'train': (638492, 638464), 'test': (1000,)},
    homepage='https://github.com/stevewongv/SPANet',
    citation="""@inproceedings{wang2019spatial,
  title={Spatial attentive single-image deraining with a high quality real rain dataset},
  author={Wang, Tianyu and Yang, Xin and Xu, Ke and Chen, Shaozhe and Zhang, Qiang and
          Lau, Rynson W. H.},
  booktitle={CVPR},
  year={2019}
}""",
)

RAIN13K_TEST_SETS = {'test100': 'Test100', 'rain100h': 'Rain100H', 'rain100l': 'Rain100L',
                     'test1200': 'Test1200', 'test2800': 'Test2800'}

RAIN13K = layouts.DatasetSpec(
    name='rain13k',
    title=('Rain13K training mixture with its five test sets (MSPFN, MPRNet, Restormer); '
           'split "test" reads all test sets found, one after another'),
    source=('the Google Drive links in MPRNet\'s Deraining/Datasets/README.md '
            '(github.com/swz30/MPRNet) or Restormer\'s (github.com/swz30/Restormer).'),
    splits=('train',) + tuple(RAIN13K_TEST_SETS),
    split_dirs={'train': TRAIN, **{s: TEST for s in RAIN13K_TEST_SETS}},
    split_containers={'train': ('Rain13K',), **{s: (d,) for s, d in RAIN13K_TEST_SETS.items()}},
    aliases=('Datasets', 'Deraining'),
    layouts=(
        FolderLayout(
            'R', 'MPRNet / Restormer',
            ('train/Rain13K/input/{k}.* + train/Rain13K/target/{k}.*',
             'test/{Test100,Rain100H,Rain100L,Test1200,Test2800}/input/{k}.* + .../target/{k}.*',
             'rule: same file name'),
            (FolderPair(('input',), ('target',), pairing.SAME_STEM, containers=('@split',)),)),
    ),
    # The papers state 13,712 training pairs and a Test100 of 100; the download holds
    # 13,711 (one pair of wrong size removed, MPRNet issue #74) and 98 (MSPFN's
    # convention, MPRNet issue #23).
    published={'train': (13712, 13711), 'test100': (100, 98), 'rain100h': (100,),
               'rain100l': (100,),
               'test1200': (1200,), 'test2800': (2800,)},
    homepage='https://github.com/swz30/MPRNet',
    citation="""@inproceedings{zamir2021multi,
  title={Multi-stage progressive image restoration},
  author={Zamir, Syed Waqas and Arora, Aditya and Khan, Salman and Hayat, Munawar and
          Khan, Fahad Shahbaz and Yang, Ming-Hsuan and Shao, Ling},
  booktitle={CVPR},
  year={2021}
}""",
)

# Folder names of users' own pairs: first the rainy folder, then the clean one.
PAIRED_FOLDER_NAMES = (('rainy', 'clean'), ('rain', 'norain'), ('input', 'target'),
                       ('input', 'gt'), ('input', 'groundtruth'), ('rain', 'gt'),
                       ('rainy', 'gt'), ('lq', 'gt'), ('data', 'label'))

PAIRED_FOLDER = layouts.DatasetSpec(
    name='paired_folder',
    title="your own pairs: two folders per split with the same file names, or your patterns",
    source=('your own data. Without a pattern file: <split>/rainy/*.png + <split>/clean/*.png '
            '(any folder pair below). With a pattern file paired_folder.json in the data '
            'folder: {"train": {"rainy": "train/rain/{id}x2.png", "clean": '
            '"train/norain/{id}.png"}, "test": {...}}; see docs/data.md.'),
    splits=('train', 'test'),
    split_dirs={'train': TRAIN, 'test': TEST + ('val', 'validation')},
    layouts=(
        FolderLayout(
            'S', 'two folders, same names',
            ('<split>/<rainy>/{name}.* + <split>/<clean>/{name}.*, where <rainy>/<clean> is '
             + ', '.join(f'{r}/{c}' for r, c in PAIRED_FOLDER_NAMES),
             'rule: same file name (extensions may differ)'),
            tuple(FolderPair((r,), (c,), pairing.SAME_STEM) for r, c in PAIRED_FOLDER_NAMES)),
    ),
    spec_file=layouts.SPEC_FILE,
)

SPECS = {s.name: s for s in (RAIN200L, RAIN200H, RAIN100L, RAIN100H, RAIN12, RAIN1400,
                             SPA_DATA, RAIN13K, PAIRED_FOLDER)}
