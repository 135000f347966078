"""DiffKD's BatchNorm: nn.BatchNorm2d's math and state, one kernel fewer per training call."""
import pytest
import torch
from torch import nn

from diffkd_mm.benchmark.op_count import count_ops
from diffkd_mm.models.diffkd.batch_norm import BatchNorm2d


@pytest.mark.parametrize('track', [True, False])
def test_same_outputs_gradients_and_running_statistics_as_torch(track):
    torch.manual_seed(0)
    ours, theirs = BatchNorm2d(
        6, track_running_stats=track), nn.BatchNorm2d(
            6, track_running_stats=track)
    nn.init.normal_(theirs.weight)
    nn.init.normal_(theirs.bias)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, 6, 3, 3) * 2 + 1
    for mode in ('train', 'train', 'eval'):
        ours.train(mode == 'train')
        theirs.train(mode == 'train')
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        torch.testing.assert_close(ours(a), theirs(b))
        ours(a).square().sum().backward()
        theirs(b).square().sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
    if track:
        torch.testing.assert_close(ours.running_mean, theirs.running_mean)
        torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert ours.state_dict().keys() == theirs.state_dict().keys()


def test_skips_only_the_batch_counter_that_nothing_reads():
    x = torch.randn(4, 6, 3, 3)
    ours, theirs = BatchNorm2d(6), nn.BatchNorm2d(6)
    ops_ours = count_ops(lambda: ours(x)).counts
    ops_theirs = count_ops(lambda: theirs(x)).counts
    assert ops_theirs['add_'] == 1 and ops_ours['add_'] == 0
    assert ours.num_batches_tracked == 0 and theirs.num_batches_tracked == 1


def test_a_cumulative_average_still_counts_batches():
    bn, ref = BatchNorm2d(3, momentum=None), nn.BatchNorm2d(3, momentum=None)
    for _ in range(3):
        x = torch.randn(4, 3, 2, 2)
        torch.testing.assert_close(bn(x), ref(x))
    assert bn.num_batches_tracked == 3
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
