"""Packaging for diffkd_mm, in the OpenMMLab style (mmdet / mmrazor).

Configs and tools travel inside the package as ``diffkd_mm/.mim`` so that
``mim train diffkd_mm CONFIG`` finds them: a copy for wheels and sdists, a
symbolic link for development (editable) installs.
"""
import os
import os.path as osp
import shutil
import sys
import warnings
from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def readme():
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        return f.read()


def get_version():
    scope = {}
    with open(osp.join(ROOT, 'diffkd_mm', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname):
    """Requirement lines of ``fname``, following ``-r`` includes, without comments."""
    reqs = []
    with open(osp.join(ROOT, fname), encoding='utf-8') as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(osp.join(osp.dirname(fname), line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


def add_mim_extension():
    """Put configs/tools into ``diffkd_mm/.mim``: linked in develop mode, copied otherwise."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'  # edits to configs/ and tools/ take effect without reinstalling
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'build', 'install')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'diffkd_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(ROOT, name)
        if not osp.exists(src):
            continue
        dst = osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), dst)
                continue
            except OSError:
                warnings.warn(f'Cannot link {src} to {dst}; copying instead.')
        if osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='diffkd_mm',
        version=get_version(),
        description='DiffKD (Knowledge Diffusion for Distillation) for OpenMMLab 2.x via mmrazor',
        long_description=readme(),
        long_description_content_type='text/markdown',
        keywords='knowledge distillation, diffusion, mmrazor, mmdet, mmseg, mmpretrain',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
        include_package_data=True,
        package_data={'diffkd_mm': ['.mim/**/*', '.mim/*']},
        python_requires='>=3.8',
        classifiers=[
            'Programming Language :: Python :: 3',
            'License :: OSI Approved :: Apache Software License',
        ],
        license='Apache License 2.0',
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'mim': parse_requirements('requirements/mminstall.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
        },
        zip_safe=False)
