"""DiffKD's graph mode on the CPU: what it captures equals eager, its cache is bounded, what it
cannot capture runs eagerly, its setting is checked.

``aot_eager`` captures the forward and backward graphs the way the GPU backends do (with
``fullgraph=True``: no graph break, no read back to the host) without generating code, so these
tests take seconds. The CUDA-graph cases (``backend='inductor', mode='reduce-overhead'``) are in
``tests/test_cuda.py``.
"""
import copy

import pytest
import torch
import torch._dynamo
from torch._dynamo.testing import CompileCounter, CompileCounterWithBackend

from diffkd_mm.models.connectors import DiffKDStudentConnector
from diffkd_mm.models.diffkd import DiffKDBranch
from diffkd_mm.models.diffkd.graph_mode import GRAPH_MODE_DEFAULTS, GraphedCalls, parse_graph_mode
from diffkd_mm.models.losses import DiffKDLoss

CAPTURE = dict(backend='aot_eager')


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    yield
    torch._dynamo.reset()


def _levels(batch=2, channels=6, sizes=((5, 4), (3, 2))):
    g = torch.Generator().manual_seed(3)
    return [torch.randn(batch, channels, *size, generator=g) for size in sizes]


def _step(loss, preds_S, preds_T, seed):
    """One forward and backward of ``loss`` with the global seed set (noise is drawn inside the
    branch, so inside the captured graph): the loss, the student gradients and every parameter
    gradient."""
    torch.manual_seed(seed)
    students = [s.clone().requires_grad_() for s in preds_S]
    value = loss(students, preds_T)
    value.backward()
    grads = {n: p.grad.clone() for n, p in loss.named_parameters() if p.grad is not None}
    loss.zero_grad()
    return value.detach(), [s.grad for s in students], grads


def _twins(graph_mode, **settings):
    """Two entries with the same weights: eager, and in graph mode."""
    torch.manual_seed(0)
    eager = DiffKDLoss(6, 16, num_levels=2, **settings)
    graphed = DiffKDLoss(6, 16, num_levels=2, graph_mode=graph_mode, **settings)
    graphed.load_state_dict(eager.state_dict())
    return eager, graphed


def _assert_steps_match(eager, graphed, seeds, step=_step, **tolerance):
    """Each seed's step of ``graphed`` gives the loss and every gradient of ``eager``'s."""
    preds_S, preds_T = _levels(), [2 * t + 1 for t in _levels(channels=16)]
    for seed in seeds:
        value, grads_S, grads = step(eager, preds_S, preds_T, seed)
        value_g, grads_S_g, grads_g = step(graphed, preds_S, preds_T, seed)
        assert torch.isfinite(value_g)
        torch.testing.assert_close(value_g, value, **tolerance)
        for grad_g, grad in zip(grads_S_g, grads_S):
            torch.testing.assert_close(grad_g, grad, **tolerance)
        assert grads and set(grads_g) == set(grads)
        for key, grad in grads.items():
            torch.testing.assert_close(grads_g[key], grad, msg=key, **tolerance)


@pytest.mark.parametrize(
    'settings', [
        dict(),
        dict(ae_channels=8, inference_steps=3),
        dict(share_branch=True, kd_trains_predictor=False, kd_predictor_ema=0.9, start_noise='vp'),
        dict(student_match_weight=0.5, denoised_pull_weight=0.5),
        dict(with_cp=True),
    ],
    ids=['default', 'ae_3steps', 'shared_ema_vp', 'student_terms', 'checkpointed'])
def test_the_loss_in_graph_mode_computes_what_eager_does(settings):
    eager, graphed = _twins(CAPTURE, **settings)
    _assert_steps_match(eager, graphed, (10, 11))  # the second call replays the first's graphs
    for key, value in eager.state_dict().items():  # BN statistics, the predictor average
        if settings.get('with_cp') and 'running_' in key:
            continue  # eager recomputation updates them again (documented; nothing reads them)
        torch.testing.assert_close(graphed.state_dict()[key], value, msg=key)
    branches = graphed.branches
    # torch 2.1's compiler captures neither the predictor on its average (functional_call) nor
    # activation checkpointing: those settings fall back to eager there (the same numbers,
    # checked above), as documented.
    captures = torch.__version__ >= '2.14' or not (settings.get('kd_trains_predictor') is False
                                                   or settings.get('with_cp'))
    per_branch = 2 // len(branches) if captures else 0
    captured = [graphed.graph_calls.num_captured(b) for b in branches]
    assert captured == [per_branch] * len(branches), 'each level captured once'
    assert (torch._dynamo.utils.counters['stats']['unique_graphs'] >= 1) == bool(captures), \
        'something was compiled'


def test_the_loss_in_graph_mode_under_autocast_computes_what_eager_does():
    """bf16 autocast (the CPU's mixed precision; fp16 on a GPU is in tests/test_cuda.py):
    autocast is part of what is captured, so the graph casts where eager casts."""
    eager, graphed = _twins(CAPTURE, ae_channels=8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        _assert_steps_match(eager, graphed, (4, ), rtol=2e-2, atol=1e-3)
    assert graphed.graph_calls.num_captured(graphed.branch(0)) == 1


def _ddp_step(loss, preds_S, preds_T, seed):
    """One step of ``loss`` wrapped in DistributedDataParallel (one process, gloo)."""
    from torch.nn.parallel import DistributedDataParallel

    class Entry(torch.nn.Module):  # DDP wraps a model; the loss entry is all of it here

        def __init__(self, loss):
            super().__init__()
            self.loss = loss

        def forward(self, preds_S, preds_T):
            return self.loss(preds_S, preds_T)

    return _step(DistributedDataParallel(Entry(loss)), preds_S, preds_T, seed)


def test_the_loss_in_graph_mode_trains_under_ddp(tmp_path):
    """Inside DistributedDataParallel (gloo, one process): the captured branch runs in the
    wrapped model's forward, DDP's reduction runs on its gradients, and they are eager's."""
    import torch.distributed as dist
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/rendezvous', rank=0, world_size=1)
    try:
        eager, graphed = _twins(CAPTURE)
        _assert_steps_match(eager, graphed, (7, 8), step=_ddp_step)
        assert graphed.graph_calls.num_captured(graphed.branch(0)) == 1
    finally:
        dist.destroy_process_group()


def test_the_student_connector_in_graph_mode_computes_what_eager_does():
    torch.manual_seed(0)
    eager = DiffKDStudentConnector(6, 16, num_levels=2, inference_steps=3)
    graphed = DiffKDStudentConnector(6, 16, num_levels=2, inference_steps=3, graph_mode=CAPTURE)
    graphed.load_state_dict(eager.state_dict())
    for connector in (eager, graphed):
        connector.bind('student_diffkd', trained_by='loss_diffkd')
    preds_S, targets = _levels(), _levels(channels=16)
    results = []
    for connector in (eager, graphed):
        torch.manual_seed(5)
        students = [s.clone().requires_grad_() for s in preds_S]
        refined = connector(students)
        total = sum((r - t).pow(2).mean() for r, t in zip(refined, targets))
        total = total + sum(connector.diffusion_loss(t, level) for level, t in enumerate(targets))
        total.backward()
        results.append((total.detach(), [s.grad for s in students], {
            n: p.grad
            for n, p in connector.named_parameters()
        }))
    (total, grads_S, grads), (total_g, grads_S_g, grads_g) = results
    torch.testing.assert_close(total_g, total)
    for grad_g, grad in zip(grads_S_g, grads_S):
        torch.testing.assert_close(grad_g, grad)
    for key, grad in grads.items():
        torch.testing.assert_close(grads_g[key], grad, msg=key)
    denoiser = graphed.denoiser(0)
    assert graphed.graph_calls.num_captured(denoiser, 'forward') == 1
    assert graphed.graph_calls.num_captured(denoiser, 'diffusion_loss') == 1


def _messages(monkeypatch):
    from mmengine.logging import MMLogger
    said = []
    monkeypatch.setattr(MMLogger.get_current_instance(), 'warning', said.append)
    return said


def test_at_most_max_shapes_are_captured_then_new_shapes_run_eagerly(monkeypatch):
    said = _messages(monkeypatch)
    counter = CompileCounter()
    calls = GraphedCalls('DiffKDLoss', backend=counter, mode=None, max_shapes=2)
    torch.manual_seed(0)
    branch = DiffKDBranch(6, 16)
    reference = copy.deepcopy(branch)
    sizes = [(4, 4), (6, 4), (8, 8), (4, 6), (4, 4)]
    for size in sizes:
        s, t = torch.randn(2, 6, *size), torch.randn(2, 16, *size)
        noise = (torch.randn(2, 16, *size), torch.randn(2, 16, *size), torch.tensor([3, 700]))
        out = calls(branch, 'forward', s, t, *noise)
        expected = reference(s, t, *noise)
        torch.testing.assert_close(out.refined, expected.refined)
        torch.testing.assert_close(out.loss_ddim, expected.loss_ddim)
    assert calls.num_captured(branch) == 2
    assert counter.frame_count == 2, 'the first shape is replayed, not captured again'
    assert len(said) == 1 and 'graph_mode.max_shapes' in said[0] and 'eagerly' in said[0]


def _failing_backend(graph, example_inputs):
    raise RuntimeError('this backend cannot compile')


def test_a_branch_that_cannot_be_captured_runs_eagerly_with_one_message(monkeypatch):
    said = _messages(monkeypatch)
    eager, graphed = _twins(dict(backend=_failing_backend))
    _assert_steps_match(eager, graphed, (1, 2))
    assert len(said) == 2, 'one message per branch, not per call'
    assert all('could not capture DiffKDBranch.forward' in m and 'runs eagerly' in m for m in said)


def test_graph_mode_is_no_part_of_the_weights_and_a_copy_starts_uncaptured():
    torch.manual_seed(0)
    eager = DiffKDLoss(6, 16, num_levels=2)
    graphed = DiffKDLoss(6, 16, num_levels=2, graph_mode=CAPTURE)
    assert list(graphed.state_dict()) == list(eager.state_dict())
    _step(graphed, _levels(), _levels(channels=16), 0)
    assert graphed.graph_calls.num_captured(graphed.branch(0)) == 1
    for clone in (copy.deepcopy(graphed), ):  # as a model EMA or a model copy makes it
        assert clone.graph_calls.settings == graphed.graph_calls.settings
        assert clone.graph_calls.num_captured(clone.branch(0)) == 0
        _step(clone, _levels(), _levels(channels=16), 0)  # captures its own graphs
        assert clone.graph_calls.num_captured(clone.branch(0)) == 1


def test_graph_mode_settings():
    assert parse_graph_mode(None, 'X') is None and parse_graph_mode(False, 'X') is None
    assert parse_graph_mode(True, 'X') == GRAPH_MODE_DEFAULTS
    assert parse_graph_mode(dict(max_shapes=3), 'X') == dict(GRAPH_MODE_DEFAULTS, max_shapes=3)
    assert parse_graph_mode(dict(backend='cudagraphs'), 'X') == dict(
        backend='cudagraphs', mode=None, max_shapes=8)
    loss = DiffKDLoss(6, 16, graph_mode=True)  # built, not run: Inductor is not needed for that
    assert loss.graph_calls.settings == GRAPH_MODE_DEFAULTS
    assert DiffKDLoss(6, 16).graph_calls is None


@pytest.mark.parametrize('value, expected', [
    ('on', 'graph_mode must be None, True or a dict'),
    (dict(mod='reduce-overhead'), 'graph_mode has unknown key.*mod'),
    (dict(backend='cudagraphs', mode='reduce-overhead'), 'graph_mode.mode applies to backend'),
    (dict(mode='fast'), 'graph_mode.mode applies to backend'),
    (dict(max_shapes=0), 'graph_mode.max_shapes must be a positive int'),
    (dict(backend=3), 'graph_mode.backend must be'),
])
def test_a_wrong_graph_mode_is_refused_by_name(value, expected):
    with pytest.raises(ValueError, match=expected):
        DiffKDLoss(6, 16, graph_mode=value)
    with pytest.raises(ValueError, match=expected):
        DiffKDStudentConnector(6, 16, graph_mode=value)


def test_calls_without_gradients_in_eval_mode_or_with_forward_hooks_run_eagerly():
    """The denoising pictures (no gradients), an eval-mode call and a hooked branch (the KD
    diagnostics hook the branch's ``__call__``, which a captured ``forward`` bypasses) run
    eagerly: they take no captured shape, and the hook fires."""
    counter = CompileCounterWithBackend('aot_eager')
    loss = DiffKDLoss(6, 16, num_levels=2, graph_mode=dict(backend=counter))
    preds_S, preds_T = _levels(), _levels(channels=16)
    with torch.no_grad():
        loss(preds_S, preds_T)
    loss.eval()
    loss(preds_S, preds_T)
    loss.train()
    seen = []
    handle = loss.branch(0).register_forward_hook(lambda m, args, out: seen.append(out.gate))
    loss(preds_S, preds_T)
    handle.remove()
    assert len(seen) == 1
    assert counter.frame_count == 1, 'only the unhooked level captured'
    assert [loss.graph_calls.num_captured(b) for b in loss.branches] == [0, 1]


def test_autocast_and_strides_are_part_of_what_is_captured():
    counter = CompileCounterWithBackend('aot_eager')
    calls = GraphedCalls('DiffKDLoss', backend=counter, mode=None, max_shapes=8)
    branch = DiffKDBranch(6, 16)
    s, t = torch.randn(2, 6, 4, 4), torch.randn(2, 16, 4, 4)
    calls(branch, 'forward', s, t)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        calls(branch, 'forward', s, t)
    calls(branch, 'forward', s.contiguous(memory_format=torch.channels_last), t)
    assert calls.num_captured(branch) == 3
    assert counter.frame_count == 3, 'one signature per graph: the bound counts what compiles'


def test_entries_that_share_the_branch_code_keep_their_own_bound(monkeypatch):
    """Every level's branch, in every entry, runs the same ``forward``; dynamo's recompile limit
    (8 by default) must not cut one entry's captures short because of another's."""
    said = _messages(monkeypatch)
    entries = [DiffKDLoss(6, 16, graph_mode=dict(CAPTURE, max_shapes=5)) for _ in range(2)]
    for entry in entries:
        for size in range(3, 8):
            _step(entry, [torch.randn(2, 6, size, 4)], [torch.randn(2, 16, size, 4)], 0)
        assert entry.graph_calls.num_captured(entry.branch(0)) == 5
    assert not said


@pytest.mark.parametrize('graph_mode', [None, CAPTURE], ids=['eager', 'graph_mode'])
def test_a_hook_on_a_connector_denoiser_fires(graph_mode):
    connector = DiffKDStudentConnector(6, 16, num_levels=2, graph_mode=graph_mode)
    connector.bind('student_diffkd', trained_by='loss_diffkd')
    seen = []
    connector.denoiser(1).register_forward_hook(lambda m, args, out: seen.append(out))
    connector(_levels())
    assert len(seen) == 1
