from pose_tuner.compile.allocation import allocate_by_latency, allocate_trials


def test_allocate_trials_follows_flops_with_a_floor():
    alloc = allocate_trials([100.0, 1.0, 1.0, 898.0], 256)
    assert all(a >= 16 for a in alloc)
    assert alloc[3] > alloc[0] > alloc[1] == alloc[2]
    assert all(a & (a - 1) == 0 for a in alloc)  # powers of two
    assert 128 <= sum(alloc) <= 512
    assert allocate_trials([1.0] * 10, 3) == [1] * 10
    assert allocate_trials([], 10) == []


def test_allocate_by_latency_follows_measured_time():
    # a task with no FLOPs to speak of can still take time: its share is what it gets
    alloc = allocate_by_latency([600e-6, 200e-6, 100e-6, 100e-6, None, 1e-9], 256)
    assert alloc[0] == 128 and alloc[1] == 64 and alloc[2] == alloc[3] == 32
    assert alloc[4] == 0  # no measured schedule: nothing to go on from
    assert alloc[5] == 0  # under half a trial
    assert all(a & (a - 1) == 0 for a in alloc)
    assert allocate_by_latency([1.0, 2.0], 0) == [0, 0]
    assert allocate_by_latency([None, None], 64) == [0, 0]
    assert allocate_by_latency([], 64) == []
