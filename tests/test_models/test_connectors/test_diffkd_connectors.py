"""DiffKD's connector style: DiffKD connectors in front of any mmrazor loss, in DiffKDDistiller."""
import copy

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from diffkd_mm.models import DiffKDLoss, DiffKDStudentConnector, DiffKDTeacherConnector
from diffkd_mm.testing import toy_batch, toy_distill_cfg
from mmrazor.registry import MODELS

S_WIDTH, T_WIDTH, LATENT = 4, 16, 8
FORWARD_ARGS = dict(L2Loss=('s_feature', 't_feature'))  # mmrazor's names of the two inputs


def connector_cfg(
        match_losses=(('loss_pkd', dict(type='PKDLoss')), ),
        ae_channels=LATENT,
        latent_channels=LATENT,
        diffusion=True):
    """The toy classifier distilled on its backbone: DiffKD connectors + the given losses."""
    cfg = toy_distill_cfg(student_width=S_WIDTH, teacher_width=T_WIDTH)
    d = cfg['distiller']
    d['connectors'] = dict(
        diffkd_s=dict(
            type='DiffKDStudentConnector',
            student_channels=S_WIDTH,
            latent_channels=latent_channels),
        diffkd_t=dict(
            type='DiffKDTeacherConnector', teacher_channels=T_WIDTH, ae_channels=ae_channels))
    d['distill_losses'] = dict(match_losses)
    d['loss_forward_mappings'] = {
        name: {
            s_arg: dict(from_student=True, recorder='feat', connector='diffkd_s'),
            t_arg: dict(from_student=False, recorder='feat', connector='diffkd_t')
        }
        for name, loss in match_losses
        for s_arg, t_arg in [FORWARD_ARGS.get(loss['type'], ('preds_S', 'preds_T'))]
    }
    if diffusion:
        d['distill_losses']['loss_diffkd'] = dict(
            type='DiffKDDiffusionLoss', student_connector='diffkd_s', teacher_connector='diffkd_t')
        d['loss_forward_mappings']['loss_diffkd'] = dict(
            target=dict(from_student=False, recorder='feat', connector='diffkd_t'))
    return cfg


def build(cfg):
    torch.manual_seed(0)
    algo = MODELS.build(cfg)
    algo.train()
    return algo


def count_calls(module, calls, key):
    module.register_forward_hook(lambda *args: calls.append(key))


def test_denoising_runs_once_per_iteration_for_two_matching_losses():
    """PKD and CWD both read the denoised student and the teacher target: the DDIM loop (5
    predictor calls), the diffusion loss (1 call) and the adapter run once; the AE encodes the
    teacher record once, for both targets and for its reconstruction loss (in the diffusion
    entry), so its BatchNorm statistics take one step per iteration."""
    hub = MessageHub.get_instance('test_connectors_once')
    algo = build(
        connector_cfg(
            match_losses=(('loss_pkd', dict(type='PKDLoss', loss_weight=1.0)),
                          ('loss_cwd',
                           dict(type='ChannelWiseDivergence', tau=1.0, loss_weight=1.0)))))
    student = algo.distiller.connectors['diffkd_s']
    teacher = algo.distiller.connectors['diffkd_t']
    calls = []
    count_calls(student.denoisers[0].noise_predictor, calls, 'predictor')
    count_calls(student.denoisers[0].noise_adapter, calls, 'adapter')
    count_calls(teacher.targets[0].autoencoder.encoder, calls, 'ae')
    before = copy.deepcopy(algo.distiller.connectors.state_dict())
    wrapper = OptimWrapper(torch.optim.SGD(algo.parameters(), lr=0.1))
    bn = teacher.targets[0].autoencoder.encoder[1]
    for iteration in range(2):
        calls.clear()
        latents = []
        handle = bn.register_forward_hook(lambda m, inputs, out: latents.append(inputs[0]))
        running = bn.running_mean.clone()
        log_vars = algo.train_step(toy_batch(seed=iteration), wrapper)
        handle.remove()
        assert calls.count('predictor') == 6 and calls.count('adapter') == 1, calls
        assert calls.count('ae') == 1, calls
        batch_mean = latents[0].detach().mean(dim=(0, 2, 3))
        torch.testing.assert_close(bn.running_mean, 0.9 * running + 0.1 * batch_mean)
    assert {'distill.loss_pkd', 'distill.loss_cwd', 'distill.loss_diffkd'} <= set(log_vars)
    assert all(torch.isfinite(torch.as_tensor(v)) for v in log_vars.values())
    assert {
        'train/distill.loss_diffkd_ddim', 'train/distill.loss_diffkd_ae',
        'train/distill.diffkd_s_gate'
    } <= set(hub.log_scalars)
    after = algo.distiller.connectors.state_dict()
    changed = [k for k, v in after.items() if not torch.equal(v, before[k])]
    for part in ('diffkd_s.denoisers.0.student_proj', 'diffkd_s.denoisers.0.noise_predictor',
                 'diffkd_s.denoisers.0.noise_adapter', 'diffkd_s.denoisers.0.output_proj',
                 'diffkd_t.targets.0.autoencoder.encoder',
                 'diffkd_t.targets.0.autoencoder.decoder'):
        assert any(k.startswith(part) for k in changed), part


def test_connectors_with_l2_compute_exactly_what_diffkd_loss_computes():
    """Same weights, same seed, one level: connectors + L2Loss (mean squared error) + the
    diffusion entry give DiffKDLoss's total, so the connector style is DiffKD, not a variant."""
    algo = build(
        connector_cfg(
            match_losses=(('loss_l2', dict(type='L2Loss', normalize=False, div_element=True)), )))
    torch.manual_seed(3)
    reference = DiffKDLoss(S_WIDTH, T_WIDTH, ae_channels=LATENT)
    student = algo.distiller.connectors['diffkd_s']
    teacher = algo.distiller.connectors['diffkd_t']
    student.denoisers[0].load_state_dict(reference.branches[0].denoiser.state_dict())
    teacher.targets[0].load_state_dict(reference.branches[0].target.state_dict())

    data = algo.data_preprocessor(toy_batch(), True)
    with algo.distiller.student_recorders, algo.distiller.teacher_recorders:
        algo.student(data['inputs'], data['data_samples'], mode='loss')
        with torch.no_grad():
            algo.teacher(data['inputs'], data['data_samples'], mode='loss')
    fs, ft = (
        recorders.get_recorder('feat').get_record_data()
        for recorders in (algo.distiller.student_recorders, algo.distiller.teacher_recorders))
    torch.manual_seed(7)
    losses = algo.distiller.compute_distill_losses()
    torch.manual_seed(7)
    expected = reference(fs, ft)
    torch.testing.assert_close(losses['loss_l2'] + losses['loss_diffkd'], expected)


def test_outputs_keep_the_input_structure_and_layout():
    student = DiffKDStudentConnector([4, 6], 8, num_levels=2).eval()
    teacher = DiffKDTeacherConnector([16, 16], ae_channels=8, num_levels=2)
    out = student([torch.randn(2, 4, 4, 4), torch.randn(2, 6, 2, 2)])
    assert isinstance(out, tuple) and [o.shape for o in out] == [(2, 8, 4, 4), (2, 8, 2, 2)]
    targets = teacher((torch.randn(2, 16, 4, 4), torch.randn(2, 16, 2, 2)))
    assert [t.shape for t in targets] == [(2, 8, 4, 4), (2, 8, 2, 2)]
    assert not any(t.requires_grad for t in targets)
    assert teacher.reconstruction_loss((torch.randn(2, 16, 4, 4), torch.randn(2, 16, 2,
                                                                              2))).requires_grad
    logits = DiffKDStudentConnector(10, 10, kernel_size=1).eval()(torch.randn(3, 10))
    assert logits.shape == (3, 10)
    tokens = DiffKDStudentConnector(6, 8).eval()(torch.randn(2, 16, 6))
    assert tokens.shape == (2, 16, 8)
    plain = DiffKDTeacherConnector(16, target_norm=None)
    ft = torch.randn(2, 16, 4, 4, requires_grad=True)
    target = plain(ft)
    assert torch.equal(target, ft) and not target.requires_grad
    assert plain.reconstruction_loss(ft) is None


def test_student_connector_in_a_stock_distiller_refuses_to_train():
    cfg = connector_cfg(diffusion=False)
    cfg['distiller']['type'] = 'ConfigurableDistiller'
    algo = build(cfg)
    with pytest.raises(
            RuntimeError,
            match="no DiffKDDiffusionLoss trains this connector.*"
            "type='DiffKDDistiller'"):
        algo.train_step(toy_batch(), OptimWrapper(torch.optim.SGD(algo.parameters(), lr=0.1)))


def _with(cfg, **changes):
    d = cfg['distiller']
    for path, value in changes.items():
        *keys, last = path.split('__')
        node = d
        for key in keys:
            node = node[key]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    return cfg


@pytest.mark.parametrize('changes,match', [
    (dict(distill_losses__loss_diffkd=None, loss_forward_mappings__loss_diffkd=None),
     r"loss_forward_mappings.loss_pkd.preds_S: connector 'diffkd_s' \(DiffKDStudentConnector\) "
     'is trained by no DiffKDDiffusionLoss'),
    (dict(
        distill_losses__loss_diffkd__teacher_connector=None,
        loss_forward_mappings__loss_diffkd__target__connector=None),
     r"loss_forward_mappings.loss_pkd.preds_T: connector 'diffkd_t' \(DiffKDTeacherConnector\) "
     'is trained by no DiffKDDiffusionLoss'),
    (dict(distill_losses__loss_diffkd__student_connector='diffkd_x'),
     r"distill_losses.loss_diffkd.student_connector = 'diffkd_x' is not in connectors "
     r'\(diffkd_s, diffkd_t\)'),
    (dict(distill_losses__loss_diffkd__teacher_connector='diffkd_s'),
     r"teacher_connector = 'diffkd_s' is a DiffKDStudentConnector; expected the name of a "
     'DiffKDTeacherConnector'),
    (dict(loss_forward_mappings__loss_diffkd__target__connector=None),
     r'loss_forward_mappings.loss_diffkd.target must be a teacher record \(from_student=False\) '
     r"through connector='diffkd_t'"),
    (dict(connectors__diffkd_s__latent_channels=16),
     r'distill_losses.loss_diffkd: connectors.diffkd_s denoises into latent_channels=\[16\]'),
])
def test_bad_connector_configs_name_the_key(changes, match):
    with pytest.raises(ValueError, match=match):
        build(_with(connector_cfg(), **changes))


def test_one_diffusion_entry_per_connector():
    cfg = connector_cfg()
    d = cfg['distiller']
    d['distill_losses']['loss_diffkd_again'] = dict(d['distill_losses']['loss_diffkd'])
    d['loss_forward_mappings']['loss_diffkd_again'] = d['loss_forward_mappings']['loss_diffkd']
    with pytest.raises(
            ValueError,
            match=r"distill_losses.loss_diffkd_again.student_connector: "
            r"connector 'diffkd_s' is already trained by distill_losses.loss_diffkd"):
        build(cfg)


def test_unlinked_diffusion_loss_and_wrong_widths_say_what_to_do():
    from diffkd_mm.models import DiffKDDiffusionLoss
    with pytest.raises(RuntimeError, match="needs distiller type='DiffKDDistiller'"):
        DiffKDDiffusionLoss('diffkd_s')(torch.randn(2, 8, 4, 4))
    algo = build(connector_cfg())
    algo.distiller.connectors['diffkd_s'].eval()
    with pytest.raises(
            ValueError,
            match=r'connectors.diffkd_s \(DiffKDStudentConnector\): '
            r'feature\[0\] has 5 channels \(shape \(2, 5, 4, 4\)\) but '
            'student_channels=4'):
        algo.distiller.connectors['diffkd_s'](torch.randn(2, 5, 4, 4))
    with pytest.raises(
            ValueError,
            match=r'connectors.diffkd_t \(DiffKDTeacherConnector\): '
            r'feature\[0\] has 8 channels.*teacher_channels=16'):
        algo.distiller.connectors['diffkd_t'](torch.randn(2, 8, 4, 4))


def test_latent_channels_and_teacher_feat_are_derived_from_the_teacher_connector():
    """Left out, the student connector's latent width is the teacher connector's AE width, and
    the diffusion entry reads the AE's input from the record its target comes from."""
    cfg = connector_cfg()
    d = cfg['distiller']
    del d['connectors']['diffkd_s']['latent_channels']
    given = copy.deepcopy(d)
    algo = build(cfg)
    assert d == given  # the user's config is not modified
    assert algo.distiller.connectors['diffkd_s'].latent_channels == [LATENT]
    assert algo.distiller.loss_forward_mappings['loss_diffkd']['teacher_feat'] == dict(
        from_student=False, recorder='feat')
    without_ae = connector_cfg(ae_channels=None)
    del without_ae['distiller']['connectors']['diffkd_s']['latent_channels']
    algo = build(without_ae)
    assert algo.distiller.connectors['diffkd_s'].latent_channels == [T_WIDTH]
    assert 'teacher_feat' not in algo.distiller.loss_forward_mappings['loss_diffkd']
    with pytest.raises(ValueError, match='latent_channels is not set. A DiffKDDistiller derives'):
        DiffKDStudentConnector(4)


def test_teacher_feat_must_be_the_teacher_record_of_the_target():
    cfg = connector_cfg()
    cfg['distiller']['loss_forward_mappings']['loss_diffkd']['teacher_feat'] = dict(
        from_student=False, recorder='feat', connector='diffkd_t')
    with pytest.raises(
            ValueError,
            match=r'loss_forward_mappings.loss_diffkd.teacher_feat must be the teacher record '
            r"that target comes from \(from_student=False, recorder='feat'\), without a connector"):
        build(cfg)


def test_ae_loss_needs_the_teacher_record():
    algo = build(connector_cfg())
    loss = algo.distiller.distill_losses['loss_diffkd']
    with pytest.raises(ValueError, match='connectors.diffkd_t has an AE.*map teacher_feat'):
        loss(torch.randn(2, LATENT, 8, 8))


@pytest.mark.parametrize('build_it,match', [
    (lambda: DiffKDStudentConnector(4, 8, inference_step=3),
     r"unknown setting 'inference_step' \(did you mean 'inference_steps'\?\)"),
    (lambda: DiffKDStudentConnector(4, 8, target_norm=None),
     r"unknown setting 'target_norm' \(a setting of the teacher side \(DiffKDTarget\)\)"),
    (lambda: DiffKDTeacherConnector(16, kernel_size=1),
     r"unknown setting 'kernel_size' \(a setting of the student side \(DiffKDDenoiser\)\)"),
    (lambda: DiffKDLoss(4, 8, ae_channel=8), r"'ae_channel' \(did you mean 'ae_channels'\?\)"),
])
def test_unknown_settings_name_the_key_and_the_side(build_it, match):
    with pytest.raises(ValueError, match=match):
        build_it()


def test_weights_saved_before_the_sides_were_split_still_load():
    """A teacher connector's AE was saved as autoencoders.<level>.*; a branch's parts directly
    under it (student_proj.*, autoencoder.*): both load, strictly, into today's modules."""
    teacher = DiffKDTeacherConnector(16, ae_channels=8)
    old = {
        k.replace('targets.0.autoencoder.', 'autoencoders.0.'): v.clone() + 1
        for k, v in teacher.state_dict().items()
    }
    teacher.load_state_dict(old)
    assert torch.equal(teacher.targets[0].autoencoder.encoder[0].weight,
                       old['autoencoders.0.encoder.0.weight'])
    loss = DiffKDLoss(4, 16, ae_channels=8)
    old = {
        k.replace('denoiser.', '').replace('target.', ''): v.clone() + 1
        for k, v in loss.state_dict().items()
    }
    assert {'branches.0.student_proj.weight', 'branches.0.autoencoder.encoder.0.weight'} <= set(old)
    loss.load_state_dict(old)
    assert torch.equal(loss.branches[0].denoiser.student_proj.weight,
                       old['branches.0.student_proj.weight'])


def test_settings_are_keywords_only():
    """The settings once had other positions: a positional one is refused, never misread."""
    for build_it in (lambda: DiffKDTeacherConnector(16, 8), lambda: DiffKDStudentConnector(4, 8, 1),
                     lambda: DiffKDLoss(4, 8, 1, 3)):
        with pytest.raises(TypeError, match='positional argument'):
            build_it()


def test_diffusion_entry_names_its_weight_as_diffkd_loss_does(monkeypatch):
    from diffkd_mm.models import DiffKDDiffusionLoss
    from diffkd_mm.models.losses import diffkd_diffusion_loss
    said = []
    monkeypatch.setattr(diffkd_diffusion_loss, 'print_log', lambda msg, **kw: said.append(msg))
    assert DiffKDDiffusionLoss('diffkd_s', ddim_loss_weight=0.5).ddim_loss_weight == 0.5
    assert said == []
    assert DiffKDDiffusionLoss('diffkd_s', loss_weight=0.25).ddim_loss_weight == 0.25
    assert len(said) == 1 and 'loss_weight is deprecated, use ddim_loss_weight' in said[0]
    with pytest.raises(ValueError, match='give ddim_loss_weight only'):
        DiffKDDiffusionLoss('diffkd_s', ddim_loss_weight=0.5, loss_weight=0.25)


def test_denoisers_were_branches_and_old_weights_and_code_still_work():
    torch.manual_seed(0)
    connector = DiffKDStudentConnector(4, 8, num_levels=2)
    old = {k.replace('denoisers.', 'branches.', 1): v for k, v in connector.state_dict().items()}
    assert all(k.startswith('branches.') for k in old)
    fresh = DiffKDStudentConnector(4, 8, num_levels=2)
    fresh.load_state_dict(old)  # strict
    for (name, a), b in zip(connector.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.warns(DeprecationWarning, match='use .denoisers'):
        assert fresh.branches is fresh.denoisers
