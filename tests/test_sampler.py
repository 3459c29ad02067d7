from collections import Counter

import pytest
import torch

from deid.errors import InputError
from reid_model.sampler import PKSampler

# Identity 0..4 with 1, 2, 3, 4, 6 images; identity 0 needs oversampling for k=3.
LABELS = [0] + [1] * 2 + [2] * 3 + [3] * 4 + [4] * 6


def _batches(sampler: PKSampler) -> list[list[int]]:
    idx = list(sampler)
    size = sampler.p * sampler.k
    assert len(idx) == len(sampler)
    return [idx[i : i + size] for i in range(0, len(idx), size)]


def test_batches_hold_p_distinct_identities_with_k_images():
    s = PKSampler(LABELS, p=2, k=3, num_batches=10, generator=torch.Generator().manual_seed(0))
    for batch in _batches(s):
        labels = [LABELS[i] for i in batch]
        counts = Counter(labels)
        assert len(counts) == 2 and set(counts.values()) == {3}
        # Contiguous runs of k per identity.
        assert len({labels[0], labels[1], labels[2]}) == 1
        for label in counts:
            members = [i for i in batch if LABELS[i] == label]
            available = LABELS.count(label)
            # Distinct images when the identity has enough, all its images otherwise.
            assert len(set(members)) == min(3, available)


def test_identities_are_served_evenly():
    s = PKSampler(LABELS, p=2, k=2, num_batches=25, generator=torch.Generator().manual_seed(1))
    batches = _batches(s)
    seen = Counter(LABELS[b[0]] for b in batches) + Counter(LABELS[b[2]] for b in batches)
    # 50 identity slots over 5 identities, served from running permutations: 10 each (+-1).
    assert all(9 <= n <= 11 for n in seen.values()), seen


def test_generator_makes_it_reproducible_and_epochs_differ():
    a = PKSampler(LABELS, 2, 2, 5, torch.Generator().manual_seed(7))
    b = PKSampler(LABELS, 2, 2, 5, torch.Generator().manual_seed(7))
    first = list(a)
    assert first == list(b)
    assert list(a) != first  # the generator advanced


def test_ranks_split_one_common_stream():
    single = PKSampler(LABELS, 2, 2, 6, torch.Generator().manual_seed(3))
    stream = _batches(single)
    for rank in (0, 1):
        s = PKSampler(LABELS, 2, 2, 3, torch.Generator().manual_seed(3), rank=rank, world_size=2)
        assert _batches(s) == stream[rank::2]


def test_argument_validation():
    g = torch.Generator()
    with pytest.raises(InputError, match="multiple of k"):
        PKSampler.from_batch_size(LABELS, batch_size=7, k=2, num_batches=1, generator=g)
    assert PKSampler.from_batch_size(LABELS, 8, 2, 1, g).p == 4
    with pytest.raises(InputError, match="identities"):
        PKSampler(LABELS, p=6, k=2, num_batches=1, generator=g)
    with pytest.raises(InputError, match="k must be"):
        PKSampler(LABELS, p=2, k=0, num_batches=1, generator=g)
    with pytest.raises(InputError, match="rank"):
        PKSampler(LABELS, p=2, k=2, num_batches=1, generator=g, rank=2, world_size=2)
