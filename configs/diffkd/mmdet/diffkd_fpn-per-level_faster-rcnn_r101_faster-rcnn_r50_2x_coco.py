# Renamed diffkd-per-level_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py: every config is named
# <algorithm>[-<variant>]_<distilled features>_<teacher>_<student>_<schedule>_<data>, as mmrazor's
# recipes are. This former name points there and will be removed in the next release.
_base_ = ['./diffkd-per-level_fpn_faster-rcnn_r101_faster-rcnn_r50_2x_coco.py']
