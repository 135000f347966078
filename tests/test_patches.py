"""Every change to code that is not diffkd_mm's own is made in diffkd_mm.patches, documented."""
import ast
import os
import os.path as osp
import sys
import types

import pytest

from diffkd_mm import patches

PACKAGE = osp.dirname(patches.__file__)


def foreign_assignments(source: str):
    """``(line, what)`` for each statement that changes an attribute of an imported third-party
    module or class (``torch.load = f``, ``setattr(sys, 'stdout', s)``, ``del X.y``), an
    entry of ``sys.modules``, or an object's ``__class__``."""
    tree = ast.parse(source)
    foreign = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            foreign |= {(a.asname or a.name).split('.')[0]
                        for a in node.names if not a.name.startswith('diffkd_mm')}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and \
                not node.module.startswith('diffkd_mm'):
            foreign |= {a.asname or a.name for a in node.names}

    def root(expr):
        while isinstance(expr, (ast.Attribute, ast.Subscript)):
            expr = expr.value
        return expr.id if isinstance(expr, ast.Name) else None

    def changes(target) -> bool:
        if isinstance(target, ast.Attribute):
            return target.attr == '__class__' or root(target.value) in foreign
        if isinstance(target, ast.Subscript):
            return ast.unparse(target.value) == 'sys.modules'
        if isinstance(target, (ast.Tuple, ast.List)):
            return any(map(changes, target.elts))
        return False

    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ('setattr', 'delattr') and node.args:
            if root(node.args[0]) in foreign:
                found.append((node.lineno, ast.unparse(node)))
        found += [(node.lineno, ast.unparse(t)) for t in targets if changes(t)]
    return sorted(found)


def test_the_scan_finds_each_kind_of_change():
    source = ('import sys\nimport torch\nfrom mmrazor.models import ConfigurableDistiller\n'
              'from . import fileio\n'
              'torch.load = None\n'
              'ConfigurableDistiller.build_distill_losses = None\n'
              'sys.stdout, x = None, 1\n'
              "setattr(torch.hub, 'download_url_to_file', None)\n"
              'del torch.nn.Module.forward\n'
              "sys.modules['m'] = None\n"
              'obj.__class__ = dict\n'
              'fileio.value = 1\nobj.attr = 2\n')
    assert [line for line, _ in foreign_assignments(source)] == [5, 6, 7, 8, 9, 10, 11]


def test_no_module_but_patches_changes_foreign_code():
    offenders = []
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            path = osp.join(folder, name)
            if name.endswith('.py') and path != patches.__file__:
                with open(path) as f:
                    offenders += [
                        f'{osp.relpath(path, PACKAGE)}:{line}: {what}'
                        for line, what in foreign_assignments(f.read())
                    ]
    assert not offenders, 'change it through diffkd_mm.patches.swapped, documented there:\n' + \
        '\n'.join(offenders)


def test_every_patch_is_documented():
    for name in patches.PATCHES:
        assert f'``{name}``' in patches.__doc__, name


def test_swapped_puts_back_exactly_what_was_there():
    owner = types.SimpleNamespace(value=1)
    with patches.swapped(owner, 'value', 2, patch='console'):
        assert owner.value == 2
    assert owner.value == 1
    with patches.swapped(owner, 'missing', 3, patch='console'):
        assert owner.missing == 3
    assert not hasattr(owner, 'missing')

    class Base:

        @classmethod
        def build(cls):
            return 'base'

    class Child(Base):
        pass

    with patches.swapped(Base, 'build', classmethod(lambda cls: 'swapped'), patch='console'):
        assert Child.build() == 'swapped'
    assert Child.build() == 'base' and 'build' not in vars(Child)
    stdout = sys.stdout
    with pytest.raises(RuntimeError), patches.swapped(sys, 'stdout', None, patch='console'):
        raise RuntimeError
    assert sys.stdout is stdout


def test_an_undocumented_patch_is_refused():
    owner = types.SimpleNamespace(value=1)
    with pytest.raises(ValueError, match='checkpoint-guard'):
        with patches.swapped(owner, 'value', 2, patch='my-fix'):
            pass
    assert owner.value == 1
