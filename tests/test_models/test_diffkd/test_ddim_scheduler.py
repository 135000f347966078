import pytest
import torch

from diffkd_mm.models.diffkd import DDIMScheduler

diffusers = pytest.importorskip('diffusers')


def reference_scheduler(steps=5):
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule='linear',
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        prediction_type='epsilon',
        timestep_spacing='leading')
    ref.set_timesteps(2 * steps)
    return ref


def test_schedule_matches_diffusers():
    ours, ref = DDIMScheduler(), reference_scheduler()
    assert torch.equal(ours.alphas_cumprod, ref.alphas_cumprod)
    assert ours.timesteps.tolist() == ref.timesteps[len(ref.timesteps) // 2:].tolist() \
        == [400, 300, 200, 100, 0]


@pytest.mark.parametrize('steps', [1, 3, 5, 10])
def test_steps_match_diffusers(steps):
    ours, ref = DDIMScheduler(inference_steps=steps), reference_scheduler(steps)
    g = torch.Generator().manual_seed(steps)
    sample = torch.randn(2, 4, 3, 3, generator=g)
    for k, t in enumerate(ref.timesteps[len(ref.timesteps) // 2:]):
        eps = torch.randn(2, 4, 3, 3, generator=g)
        expected = ref.step(eps, t, sample, eta=0.0).prev_sample
        got = ours.step(eps, k, sample)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        sample = expected


def test_add_noise_matches_diffusers():
    ours, ref = DDIMScheduler(), reference_scheduler()
    x0, eps = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    t = torch.tensor([0, 517, 999])
    torch.testing.assert_close(ours.add_noise(x0, eps, t), ref.add_noise(x0, eps, t))


def test_loop_with_exact_noise_recovers_x0_in_closed_form():
    """If eps_theta returns the true noise, every DDIM step stays on
    x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps, and the last step (ab_prev = 1) lands on x0."""
    sched = DDIMScheduler(inference_steps=5)
    x0, eps = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    t0 = sched.timesteps[0]
    x = sched.alphas_cumprod[t0].sqrt() * x0 + (1 - sched.alphas_cumprod[t0]).sqrt() * eps
    for k in range(sched.inference_steps):
        x = sched.step(eps, k, x)
        if k < sched.inference_steps - 1:
            t = sched.timesteps[k + 1]
            on_path = sched.alphas_cumprod[t].sqrt() * x0 + (1 -
                                                             sched.alphas_cumprod[t]).sqrt() * eps
            torch.testing.assert_close(x, on_path, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x, x0, rtol=1e-5, atol=1e-5)


def test_constants_are_buffers_that_follow_dtype_free_autocast():
    sched = DDIMScheduler()
    assert {n for n, _ in sched.named_buffers()} >= {'alphas_cumprod', 'timesteps', 'step_coefs'}
    assert sched.state_dict() == {}  # derived constants: not persisted in checkpoints
    x = torch.randn(2, 3, 4, 4, dtype=torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert sched.step(x, 0, x).dtype == torch.bfloat16
        assert sched.add_noise(x, x, torch.tensor([1, 2])).dtype == torch.bfloat16
    assert sched.step_coefs.dtype == torch.float32


@pytest.mark.parametrize('kwargs,match', [
    (dict(inference_steps=0), 'inference_steps'),
    (dict(inference_steps=600), 'inference_steps'),
    (dict(inference_steps=2.5), 'inference_steps'),
    (dict(inference_steps=5, schedule_steps=4), 'schedule_steps'),
    (dict(beta_start=0.1, beta_end=0.01), 'beta_start'),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DDIMScheduler(**kwargs)
