"""The embedded synthetic datasets, read by mmdet, mmseg and mmpretrain's own dataset classes."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.registry import DATASETS

from diffkd_mm.datasets import (CLASSES, SEG_CLASSES, SEG_PALETTE, cls_dataset_cfg,
                                default_data_root, det_dataset_cfg, ensure_dataset, formats,
                                make_classification_dataset, make_detection_dataset,
                                make_segmentation_dataset, seg_dataset_cfg)

SMALL = dict(num_train=12, num_val=4, img_size=64, seed=3)
DET_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs')
]
SEG_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]


def read_tree(data_dir):
    """{relative path: bytes} of every file under ``data_dir``."""
    files = {}
    for parent, _, names in os.walk(data_dir):
        for name in names:
            path = osp.join(parent, name)
            with open(path, 'rb') as f:
                files[osp.relpath(path, data_dir)] = f.read()
    return files


def load_coco(det_dir, split):
    with open(osp.join(det_dir, 'annotations', f'instances_{split}.json')) as f:
        return json.load(f)


def read_label_map(seg_dir, split, index):
    return cv2.imread(osp.join(seg_dir, 'ann_dir', split, f'{index:06d}.png'), cv2.IMREAD_UNCHANGED)


@pytest.fixture(scope='module')
def scenes(tmp_path_factory):
    """A detection and a segmentation dataset of the same scenes."""
    root = tmp_path_factory.mktemp('synthetic')
    det_dir = make_detection_dataset(root / 'det', **SMALL)['data_root']
    seg_dir = make_segmentation_dataset(root / 'seg', **SMALL)['data_root']
    return det_dir, seg_dir


def test_deterministic_per_seed_and_per_image(tmp_path):
    first = read_tree(make_detection_dataset(tmp_path / 'a', **SMALL)['data_root'])
    again = read_tree(make_detection_dataset(tmp_path / 'b', **SMALL)['data_root'])
    assert first == again
    images = [data for name, data in first.items() if name.endswith('.png')]
    assert len(set(images)) == len(images) == SMALL['num_train'] + SMALL['num_val']

    other = read_tree(make_detection_dataset(tmp_path / 'c', **dict(SMALL, seed=4))['data_root'])
    for name in first:
        if name.endswith('.png') or name.startswith('annotations'):
            assert first[name] != other[name], name

    # Each image has its own generator: a shorter dataset is a prefix of a longer one.
    prefix = read_tree(
        make_detection_dataset(tmp_path / 'd', **dict(SMALL, num_train=5))['data_root'])
    for index in range(5):
        name = osp.join('images', 'train', f'{index:06d}.png')
        assert prefix[name] == first[name]

    seg = read_tree(make_segmentation_dataset(tmp_path / 'e', **SMALL)['data_root'])
    assert seg == read_tree(make_segmentation_dataset(tmp_path / 'f', **SMALL)['data_root'])


def test_detection_and_segmentation_draw_the_same_scenes(scenes):
    det_dir, seg_dir = scenes
    for split in ('train', 'val'):
        for index in range(SMALL[f'num_{split}']):
            name = f'{index:06d}.png'
            with open(osp.join(det_dir, 'images', split, name), 'rb') as f_det, \
                    open(osp.join(seg_dir, 'img_dir', split, name), 'rb') as f_seg:
                assert f_det.read() == f_seg.read()


def test_detection_dataset_with_mmdet_pipeline(scenes):
    det_dir, seg_dir = scenes
    size = SMALL['img_size']
    dataset = DATASETS.build(det_dataset_cfg(det_dir, 'train', pipeline=DET_PIPELINE))
    assert type(dataset).__name__ == 'CocoDataset'
    assert len(dataset) == SMALL['num_train']
    assert dataset.metainfo['classes'] == CLASSES
    coco = load_coco(det_dir, 'train')
    areas = {}
    for ann in coco['annotations']:
        areas.setdefault(ann['image_id'] - 1, []).append(ann['area'])

    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']
        assert sample.img_path.endswith(osp.join('images', 'train', f'{index:06d}.png'))
        assert tuple(sample.ori_shape) == (size, size)
        boxes = sample.gt_instances.bboxes.tensor
        labels = sample.gt_instances.labels
        assert len(boxes) >= 1
        assert ((labels >= 0) & (labels < len(CLASSES))).all()
        assert (boxes >= 0).all() and (boxes <= size).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()

        # The boxes cover the drawn objects: every object pixel of the scene's label map lies in
        # a box of its class, and every box holds at least the visible half of its object.
        label_map = read_label_map(seg_dir, 'train', index)
        covered = np.zeros_like(label_map, dtype=bool)
        for (x0, y0, x1, y1), label, area in zip(boxes.int().tolist(), labels.tolist(),
                                                 areas[index]):
            inside = np.zeros_like(covered)
            inside[y0:y1, x0:x1] = True
            own = inside & (label_map == label + 1)
            assert own.sum() >= 0.5 * area
            covered |= own
        assert (covered == (label_map > 0)).all()


def test_detection_annotations_evaluate_with_coco_metric(scenes):
    from mmdet.evaluation import CocoMetric
    det_dir, _ = scenes
    dataset = DATASETS.build(det_dataset_cfg(det_dir, 'val', pipeline=DET_PIPELINE, test_mode=True))
    metric = CocoMetric(
        ann_file=osp.join(det_dir, 'annotations', 'instances_val.json'), metric='bbox')
    metric.dataset_meta = dataset.metainfo
    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']
        gt = sample.gt_instances
        pred = dict(bboxes=gt.bboxes.tensor, labels=gt.labels, scores=torch.ones(len(gt)))
        metric.process(
            {}, [dict(pred_instances=pred, img_id=sample.img_id, ori_shape=sample.ori_shape)])
    # The ground truth scored as a prediction is perfect only if ids, boxes and areas agree.
    assert metric.evaluate(len(dataset))['coco/bbox_mAP'] == pytest.approx(1.0)


def test_segmentation_dataset_with_mmseg_pipeline(scenes):
    det_dir, seg_dir = scenes
    dataset = DATASETS.build(seg_dataset_cfg(seg_dir, 'val', pipeline=SEG_PIPELINE))
    assert type(dataset).__name__ == 'BaseSegDataset'
    assert len(dataset) == SMALL['num_val']
    assert dataset.metainfo['classes'] == SEG_CLASSES
    assert [list(c) for c in dataset.metainfo['palette']] == SEG_PALETTE
    coco = load_coco(det_dir, 'val')

    boundary_grad, inner_grad = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        seg_map = item['data_samples'].gt_sem_seg.data[0].numpy()
        assert seg_map.shape == item['inputs'].shape[1:]
        assert set(np.unique(seg_map)) <= set(range(len(SEG_CLASSES)))
        # Same geometry as the detection annotations: the classes shown are the annotated ones.
        annotated = {
            ann['category_id']
            for ann in coco['annotations'] if ann['image_id'] == index + 1
        }
        assert set(np.unique(seg_map)) - {0} == annotated

        # The label map matches the image: colour steps sit on label boundaries.
        img = item['inputs'].permute(1, 2, 0).numpy().astype(np.int64)
        grad = np.abs(np.diff(img, axis=1)).sum(-1)
        boundary = np.diff(seg_map.astype(np.int64), axis=1) != 0
        boundary_grad.append(grad[boundary])
        inner_grad.append(grad[~boundary])
    assert np.concatenate(boundary_grad).mean() > 5 * np.concatenate(inner_grad).mean()


def test_classification_dataset_with_mmpretrain(tmp_path):
    from mmpretrain.datasets import CustomDataset
    info = make_classification_dataset(tmp_path / 'cls', num_train=12, num_val=6, img_size=48)
    data_dir = info['data_root']
    assert info['splits']['train']['per_class'] == dict.fromkeys(CLASSES, 4)

    dataset = CustomDataset(data_root=osp.join(data_dir, 'train'), with_label=True)
    assert dataset.metainfo['classes'] == CLASSES
    assert np.bincount(dataset.get_gt_labels()).tolist() == [4, 4, 4]
    for item in dataset:
        assert osp.basename(osp.dirname(item['img_path'])) == CLASSES[item['gt_label']]

    val = DATASETS.build(
        cls_dataset_cfg(
            data_dir, 'val', pipeline=[dict(type='LoadImageFromFile'),
                                       dict(type='PackInputs')]))
    assert np.bincount(val.get_gt_labels()).tolist() == [2, 2, 2]
    assert val[0]['inputs'].shape == (3, 48, 48)


def test_ensure_dataset_generates_once(tmp_path):
    data_dir = ensure_dataset('seg', root=tmp_path, **SMALL)
    assert osp.dirname(data_dir) == str(tmp_path) and osp.basename(data_dir).startswith('seg_')
    image = osp.join(data_dir, 'img_dir', 'train', '000000.png')
    before = os.stat(image).st_mtime_ns

    # Defaults spelled out give the same directory, which is reused as is.
    assert ensure_dataset('seg', root=tmp_path, max_objects=4, **SMALL) == data_dir
    assert os.stat(image).st_mtime_ns == before
    assert ensure_dataset('seg', root=tmp_path, **dict(SMALL, seed=5)) != data_dir
    assert ensure_dataset('cls', root=tmp_path) != ensure_dataset('det', root=tmp_path, **SMALL)
    assert not [name for name in os.listdir(tmp_path) if name.startswith('.')]  # no temp dirs


def test_ensure_dataset_regenerates_incomplete(tmp_path):
    data_dir = ensure_dataset('det', root=tmp_path, **SMALL)
    content = read_tree(data_dir)
    # An incomplete dataset (no marker) with a leftover file: regenerated from scratch.
    os.remove(osp.join(data_dir, '.complete'))
    with open(osp.join(data_dir, 'leftover.txt'), 'w') as f:
        f.write('stale')
    assert ensure_dataset('det', root=tmp_path, **SMALL) == data_dir
    assert read_tree(data_dir) == content
    assert os.listdir(tmp_path) == [osp.basename(data_dir)]


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    write_png = formats.write_png
    calls = []

    def failing_write(path, array):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        write_png(path, array)

    monkeypatch.setattr(formats, 'write_png', failing_write)
    with pytest.raises(KeyboardInterrupt):
        ensure_dataset('det', root=tmp_path, **SMALL)
    assert os.listdir(tmp_path) == []

    monkeypatch.setattr(formats, 'write_png', write_png)
    data_dir = ensure_dataset('det', root=tmp_path, **SMALL)
    assert len(load_coco(data_dir, 'train')['images']) == SMALL['num_train']


def test_foreign_directory_is_never_overwritten(tmp_path):
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'keep.txt').write_text('precious')
    with pytest.raises(FileExistsError, match='not created by'):
        make_detection_dataset(foreign, **SMALL)
    assert os.listdir(foreign) == ['keep.txt']
    assert (foreign / 'keep.txt').read_text() == 'precious'
    # An existing empty directory is fine.
    (tmp_path / 'empty').mkdir()
    make_classification_dataset(tmp_path / 'empty', num_train=3, num_val=3, img_size=32)


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv('DIFFKD_DATA_ROOT', raising=False)
    assert default_data_root() == osp.expanduser(osp.join('~', '.cache', 'diffkd_mm', 'data'))
    monkeypatch.setenv('DIFFKD_DATA_ROOT', str(tmp_path / 'cache'))
    assert default_data_root() == str(tmp_path / 'cache')
    data_dir = ensure_dataset('cls', num_train=3, num_val=3, img_size=32)
    assert osp.dirname(data_dir) == str(tmp_path / 'cache')


@pytest.mark.parametrize('call, name', [
    (lambda root: make_detection_dataset(root, num_train=0), 'num_train'),
    (lambda root: make_detection_dataset(root, num_val=1.5), 'num_val'),
    (lambda root: make_detection_dataset(root, img_size=16), 'img_size'),
    (lambda root: make_detection_dataset(root, seed=-1), 'seed'),
    (lambda root: make_segmentation_dataset(root, max_objects=0), 'max_objects'),
    (lambda root: make_segmentation_dataset(root, num_train=True), 'num_train'),
    (lambda root: make_classification_dataset(root, num_train=2), 'num_train'),
    (lambda root: make_detection_dataset('', num_train=2), 'root'),
    (lambda root: ensure_dataset('pose', root=root), 'task'),
    (lambda root: ensure_dataset('det', root=root, num_trian=5), 'num_trian'),
    (lambda root: ensure_dataset('cls', root=root, max_objects=2), 'max_objects'),
    (lambda root: ensure_dataset('cls', root=root, num_val=0), 'num_val'),
    (lambda root: det_dataset_cfg(root, 'test'), 'split'),
    (lambda root: seg_dataset_cfg(root, 'training'), 'split'),
])
def test_bad_arguments(tmp_path, call, name):
    with pytest.raises(ValueError, match=name):
        call(tmp_path / 'data')
    assert os.listdir(tmp_path) == []


def test_own_dataset_with_other_arguments_is_replaced(tmp_path):
    data_dir = tmp_path / 'cls'
    make_classification_dataset(data_dir, num_train=3, num_val=3, img_size=32)
    info = make_classification_dataset(data_dir, num_train=6, num_val=3, img_size=32)
    assert info['args']['num_train'] == 6
    assert len(os.listdir(data_dir / 'train' / 'circle')) == 2
    assert sorted(os.listdir(tmp_path)) == ['cls']


@pytest.mark.parametrize('damage', ['deleted', 'truncated'])
def test_damaged_dataset_is_regenerated_with_one_warning(tmp_path, monkeypatch, damage):
    from diffkd_mm.datasets import generate
    data_dir = ensure_dataset('seg', root=tmp_path, **SMALL)
    content = read_tree(data_dir)
    victim = osp.join(data_dir, 'ann_dir', 'val', '000002.png')
    if damage == 'deleted':
        os.remove(victim)
    else:
        with open(victim, 'r+b') as f:
            f.truncate(os.path.getsize(victim) // 2)
    warnings = []
    monkeypatch.setattr(generate, 'print_log', lambda msg, **kwargs: warnings.append(msg))
    assert ensure_dataset('seg', root=tmp_path, **SMALL) == data_dir
    assert read_tree(data_dir) == content  # deterministic per seed: the very same files
    assert len(warnings) == 1 and '\n' not in warnings[0]
    assert 'is damaged (ann_dir/val/000002.png' in warnings[0] and data_dir in warnings[0]
    assert os.listdir(tmp_path) == [osp.basename(data_dir)]  # no temporary folder left
    # An intact dataset is reused silently, without being rewritten.
    stamp = os.stat(victim).st_mtime_ns
    assert ensure_dataset('seg', root=tmp_path, **SMALL) == data_dir
    assert len(warnings) == 1 and os.stat(victim).st_mtime_ns == stamp


def test_manifest_lists_every_file_with_its_size(tmp_path):
    from diffkd_mm.datasets.generate import manifest_problem
    data_dir = ensure_dataset('det', root=tmp_path, **SMALL)
    marker = json.load(open(osp.join(data_dir, '.complete')))
    on_disk = {rel.replace(os.sep, '/'): len(data) for rel, data in read_tree(data_dir).items()}
    on_disk.pop('.complete'), on_disk.pop('.diffkd_mm_synthetic')
    assert marker['files'] == on_disk
    assert len(on_disk) == SMALL['num_train'] + SMALL['num_val'] + 2  # images + 2 annotation files
    assert manifest_problem(data_dir, marker) is None
    # A dataset from before manifests is not trusted: it is generated again.
    assert 'no file manifest' in manifest_problem(data_dir, dict(marker, files=None))
    with open(osp.join(data_dir, 'annotations', 'instances_val.json'), 'a') as f:
        f.write(' ')
    assert manifest_problem(data_dir, marker).startswith('annotations/instances_val.json has')


def test_full_disk_during_generation_is_one_clear_error(tmp_path, monkeypatch):
    import builtins
    import errno

    from diffkd_mm.fileio import DiskFullError
    calls = []

    def filling_open(path, mode='r', *args, **kwargs):
        if 'w' in mode and str(path).endswith('.png'):
            calls.append(path)
            if len(calls) == 5:
                raise OSError(errno.ENOSPC, 'No space left on device', str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(formats, 'open', filling_open, raising=False)
    with pytest.raises(DiskFullError) as info:
        ensure_dataset('det', root=tmp_path, **SMALL)
    text = str(info.value)
    assert '\n' not in text
    assert text.startswith(f'no space left on device while writing {tmp_path}{os.sep}det_')
    assert os.listdir(tmp_path) == []  # no temporary folder left
