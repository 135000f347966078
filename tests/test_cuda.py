"""DiffKD on a GPU: the same numbers as on the CPU, mixed precision, checkpoints that move.

Each test runs on every device of ``DEVICES``; the CUDA cases are collected everywhere and
skipped, with the reason, where no CUDA device is visible (CI and most laptops). The CPU cases
run the same code, so a CPU machine checks everything but the device itself.
``tools/device_check.sh`` runs this file on a GPU machine.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

import diffkd_mm
from diffkd_mm.engine import CPUAmpOptimWrapper, load_checkpoint_file, save_checkpoint_atomic
from diffkd_mm.models.diffkd import DiffKDBranch
from diffkd_mm.testing import synthetic_batch, toy_batch, toy_distill_cfg
from mmrazor.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
NO_CUDA = 'no CUDA device visible: the GPU half of this check runs in tools/device_check.sh'
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
DEVICES = [pytest.param('cpu'), pytest.param('cuda', marks=needs_cuda)]


@pytest.fixture
def exact_cuda_math():
    """fp32 on the GPU without TF32 (which would round convolutions to 10-bit mantissas)."""
    if not torch.cuda.is_available():
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@needs_cuda
def test_branch_on_cuda_computes_what_it_computes_on_cpu(exact_cuda_math):
    """Everything that decides the numbers moves with the module: the schedule's tables (buffers
    and step coefficients), the noise and timesteps, the BN statistics."""
    torch.manual_seed(0)
    cpu = DiffKDBranch(8, 16, ae_channels=8)
    gpu = DiffKDBranch(8, 16, ae_channels=8)
    gpu.load_state_dict(cpu.state_dict())
    gpu.cuda()
    g = torch.Generator().manual_seed(1)
    student, teacher = torch.randn(2, 8, 6, 6, generator=g), torch.randn(2, 16, 6, 6, generator=g)
    noise, ddim_noise = torch.randn(2, 8, 6, 6, generator=g), torch.randn(2, 8, 6, 6, generator=g)
    steps = torch.tensor([3, 900])
    outputs = []
    for branch, device in ((cpu, 'cpu'), (gpu, 'cuda')):
        s = student.to(device).requires_grad_()
        out = branch(
            s,
            teacher.to(device),
            noise=noise.to(device),
            diffusion_noise=ddim_noise.to(device),
            timesteps=steps.to(device))
        total = (out.refined - out.target).pow(2).mean() + out.loss_ddim + out.loss_ae
        total.backward()
        outputs.append((out.refined.detach(), total.detach(), s.grad, {
            n: p.grad
            for n, p in branch.named_parameters() if p.grad is not None
        }))
    (refined, total, grad, grads), (refined_gpu, total_gpu, grad_gpu, grads_gpu) = outputs
    torch.testing.assert_close(refined_gpu.cpu(), refined, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(total_gpu.cpu(), total, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_gpu.cpu(), grad, rtol=1e-4, atol=1e-6)
    assert set(grads_gpu) == set(grads)
    for name, value in grads.items():
        torch.testing.assert_close(grads_gpu[name].cpu(), value, rtol=1e-3, atol=1e-6, msg=name)


def _amp_wrapper(model, device: str, dtype: torch.dtype):
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if device == 'cpu':
        return CPUAmpOptimWrapper(dtype=dtype, optimizer=optimizer)
    from mmengine.optim import AmpOptimWrapper
    return AmpOptimWrapper(dtype=dtype, optimizer=optimizer)


@pytest.mark.slow  # two detectors and two segmentors, one step each
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['fp16', 'bf16'])
@pytest.mark.parametrize('task', ['det', 'seg'])
@pytest.mark.parametrize('device', DEVICES)
def test_demo_diffkd_trains_a_step_in_mixed_precision(device, task, dtype):
    if device == 'cpu' and dtype == torch.float16:
        pytest.skip('fp16 autocast is a GPU feature; on the CPU bf16 is the mixed precision')
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'diffkd', 'demo', f'{task}_diffkd.py'))
    cfg.model.teacher_ckpt = None
    torch.manual_seed(0)
    algo = MODELS.build(cfg.model).to(device)
    algo.train()
    hub = MessageHub.get_instance(f'test_cuda:{device}:{task}:{dtype}')
    log_vars = algo.train_step(synthetic_batch(algo.student), _amp_wrapper(algo, device, dtype))
    for name, value in log_vars.items():
        assert torch.isfinite(torch.as_tensor(value)), name
    logged = {key[len('train/'):] for key in hub.log_scalars}
    for term in ('_kd', '_ddim', '_gate'):  # the DiffKD terms, logged under the entry's name
        assert any(k.startswith('distill.') and k.endswith(term) for k in logged), (term, logged)
    for key in logged:
        assert torch.isfinite(torch.as_tensor(hub.get_scalar(f'train/{key}').current())), key


@pytest.mark.parametrize('device', DEVICES)
def test_a_trained_checkpoint_loads_on_the_cpu(device, tmp_path):
    """Weights trained on ``device`` and saved as a Runner saves them load on a CPU-only
    machine through the safe loader, into a model built there, unchanged."""
    torch.manual_seed(0)
    algo = MODELS.build(toy_distill_cfg()).to(device)
    algo.train_step(toy_batch(), OptimWrapper(torch.optim.SGD(algo.parameters(), lr=0.1)))
    path = str(tmp_path / 'iter_1.pth')
    save_checkpoint_atomic(dict(state_dict=algo.state_dict(), meta=dict(iter=1)), path)
    loaded = load_checkpoint_file(path, map_location='cpu')
    cpu = MODELS.build(toy_distill_cfg())
    cpu.load_state_dict(loaded['state_dict'], strict=True)
    for name, value in cpu.state_dict().items():
        assert value.device.type == 'cpu', name
        torch.testing.assert_close(value, algo.state_dict()[name].cpu(), rtol=0, atol=0, msg=name)


@pytest.fixture
def cuda_graphs_or_error():
    """Inductor raises where it would skip CUDA graphs (it only warns by default): a graph
    mode that silently ran without them would pass an equality test."""
    import torch._inductor.config as inductor_config
    with inductor_config.patch({'triton.cudagraph_or_error': True}):
        yield


#: DiffKD's graph mode as ``graph_mode=True`` sets it (Inductor, CUDA graphs), and dynamo's
#: plain CUDA-graph backend; a bound of 3 captured shapes.
GRAPH_MODES = [
    pytest.param(dict(backend='inductor', mode='reduce-overhead', max_shapes=3), id='inductor'),
    pytest.param(dict(backend='cudagraphs', mode=None, max_shapes=3), id='cudagraphs'),
]


def _branch_step(run, branch, student, teacher, noises):
    """Forward and backward of one branch with pinned noise: loss, student and weight grads."""
    s = student.clone().requires_grad_()
    out = run(s, teacher, *noises)
    loss = (out.refined - out.target).pow(2).mean() + out.loss_ddim + out.loss_ae
    loss.backward()
    grads = {n: p.grad.clone() for n, p in branch.named_parameters() if p.grad is not None}
    branch.zero_grad()
    return loss.detach(), s.grad, grads


@needs_cuda
@pytest.mark.parametrize(
    'branch_settings', [dict(), dict(kd_trains_predictor=False, kd_predictor_ema=0.9)],
    ids=['default', 'predictor_ema'])
@pytest.mark.parametrize('settings', GRAPH_MODES)
def test_graph_mode_on_cuda_computes_what_eager_does(settings, branch_settings, exact_cuda_math,
                                                     cuda_graphs_or_error):
    """Captured and replayed as CUDA graphs, for several input shapes (one of them again, so
    that a recorded graph replays), the branch computes what eager does: fp32, pinned noise,
    loss and every gradient within 1e-5; a fourth shape past the bound runs eagerly. With the
    predictor average, which every call updates, over the calls too (its buffers included)."""
    import copy

    import torch._dynamo

    from diffkd_mm.models.diffkd.graph_mode import GraphedCalls
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = DiffKDBranch(8, 16, ae_channels=8, inference_steps=3, **branch_settings).cuda()
    graphed = copy.deepcopy(eager)
    calls = GraphedCalls('test', **settings)
    g = torch.Generator().manual_seed(1)
    for size in [(8, 8), (12, 10), (8, 8), (8, 8), (6, 6), (10, 10)]:
        student = torch.randn(2, 8, *size, generator=g).cuda()
        teacher = torch.randn(2, 16, *size, generator=g).cuda()
        noises = (torch.randn(2, 8, *size,
                              generator=g).cuda(), torch.randn(2, 8, *size, generator=g).cuda(),
                  torch.tensor([3, 900]).cuda())
        expected = _branch_step(eager, eager, student, teacher, noises)
        actual = _branch_step(lambda *a: calls(graphed, 'forward', *a), graphed, student, teacher,
                              noises)
        torch.testing.assert_close(actual[0], expected[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(actual[1], expected[1], rtol=1e-5, atol=1e-5)
        for name, grad in expected[2].items():
            torch.testing.assert_close(actual[2][name], grad, rtol=1e-5, atol=1e-5, msg=name)
        for name, value in eager.state_dict().items():  # BN statistics, the predictor average
            torch.testing.assert_close(
                graphed.state_dict()[name], value, rtol=1e-5, atol=1e-5, msg=name)
    assert calls.num_captured(graphed) == 3
    # The noise drawn inside the replayed graph is new at every replay.
    student = torch.randn(2, 8, 8, 8, generator=g).cuda()
    teacher = torch.randn(2, 16, 8, 8, generator=g).cuda()
    first, second = (
        _branch_step(lambda *a: calls(graphed, 'forward', *a), graphed, student, teacher, ())[0]
        for _ in range(2))
    assert not torch.equal(first, second)


@needs_cuda
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16], ids=['fp16', 'bf16'])
@pytest.mark.parametrize('settings', GRAPH_MODES)
def test_graph_mode_trains_under_amp_on_cuda(settings, dtype, cuda_graphs_or_error):
    """Three optimizer steps of a two-level DiffKD entry in graph mode under autocast: every
    loss finite, the gates logged, the weights moved."""
    import torch._dynamo

    from diffkd_mm.models.losses import DiffKDLoss
    torch._dynamo.reset()
    torch.manual_seed(0)
    loss = DiffKDLoss(8, 16, num_levels=2, ae_channels=8, graph_mode=settings).cuda()
    loss.bind_entry('loss_graph')
    optim = _amp_wrapper(loss, 'cuda', dtype)
    before = {n: p.detach().clone() for n, p in loss.named_parameters()}
    hub = MessageHub.get_instance(f'test_cuda:graph:{dtype}')
    for _ in range(3):
        preds_S = [torch.randn(2, 8, 16, 16, device='cuda'), torch.randn(2, 8, 8, 8, device='cuda')]
        preds_T = [
            torch.randn(2, 16, 16, 16, device='cuda'),
            torch.randn(2, 16, 8, 8, device='cuda')
        ]
        with optim.optim_context(loss):
            total = loss(preds_S, preds_T)
        assert torch.isfinite(total)
        optim.update_params(total)
    assert any(key.endswith('_gate') for key in hub.log_scalars)
    assert any(not torch.equal(p.detach(), before[n]) for n, p in loss.named_parameters())
    assert [loss.graph_calls.num_captured(b) for b in loss.branches] == [1, 1]
