"""Resource profiles (one definition, local cgroups and KubeSpawner) and admission."""

from __future__ import annotations

import os
import shutil

import pytest
from traitlets import TraitError
from traitlets.config import Config

from bia_binder.events import LaunchError
from bia_binder.sessions.admission import Admission, AdmissionRefused, memory_available
from bia_binder.sessions.profiles import ResourceProfile, ResourceProfiles

GiB = 2**30


def test_default_tiers_are_those_of_the_issue():
    profiles = ResourceProfiles(host_cpus=64)
    anonymous = profiles.anonymous_profile()
    assert (anonymous.mem_limit, anonymous.cpu_limit, anonymous.storage) == (8 * GiB, 4.0, "ephemeral")
    tiers = [(p.mem_limit, p.cpu_limit, p.gpus) for p in profiles.logged_in_profiles()]
    assert tiers == [(16 * GiB, 4.0, 0), (32 * GiB, 8.0, 0), (32 * GiB, 8.0, 1)]


def test_profile_cpus_are_capped_at_the_hosts_cores():
    """A 4-CPU limit on a 2-core host holds nothing back: every local profile gets at most the host's cores."""
    cores = len(os.sched_getaffinity(0))
    profiles = ResourceProfiles()
    assert profiles.host_cpus == cores
    anonymous = profiles.anonymous_profile()
    assert anonymous.cpu_limit == min(4.0, cores)
    assert anonymous.cgroup_limits().cpus <= cores and anonymous.session_environ()["CPU_LIMIT"] == f"{min(4, cores)}"
    assert all(p.cpu_limit <= cores for p in profiles.logged_in_profiles())

    small = ResourceProfiles(host_cpus=2)
    assert small.anonymous_profile().display_name == "Anonymous (8 GB, 2 CPU)"  # says what it gets
    assert small.by_slug("large").cpu_limit == 2.0
    # pods run on other nodes: KubeSpawner keeps the configured values
    assert small.kubespawner_profile_list()[1]["kubespawner_override"]["cpu_limit"] == 8.0
    assert ResourceProfiles(host_cpus=2, cap_cpus_at_host=False).anonymous_profile().cpu_limit == 4.0


def test_tiers_are_configurable_with_size_strings():
    config = Config()
    config.ResourceProfiles.anonymous = {"slug": "anon", "mem_limit": "2G", "cpu_limit": 1, "pids_limit": 256}
    config.ResourceProfiles.logged_in = [{"slug": "big", "mem_limit": "64G", "cpu_limit": 16, "gpus": 2}]
    profiles = ResourceProfiles(config=config)
    anonymous = profiles.anonymous_profile()
    assert (anonymous.mem_limit, anonymous.pids_limit, anonymous.display_name) == (2 * GiB, 256, "anon")
    assert profiles.by_slug("big").gpus == 2
    with pytest.raises(LaunchError) as unknown:
        profiles.by_slug("huge")
    assert "big" in unknown.value.message


@pytest.mark.parametrize(
    "entry, complaint",
    [
        ({"slug": "x", "mem_limit": "8G", "cpu_limit": 1, "memory": 3}, "unknown"),
        ({"slug": "x", "cpu_limit": 1}, "lacks"),
        ({"slug": "x", "mem_limit": "lots", "cpu_limit": 1}, "not a valid memory specification"),
        ({"slug": "x", "mem_limit": "8G", "cpu_limit": 0}, "positive"),
        ({"slug": "x", "mem_limit": "8G", "cpu_limit": 1, "storage": "tape"}, "storage"),
    ],
)
def test_bad_profile_configuration_says_what_is_wrong(entry, complaint):
    with pytest.raises(TraitError, match=complaint):
        ResourceProfile.from_dict(entry)


def test_profile_maps_to_cgroup_limits_kubespawner_and_jupyterlab():
    gpu = ResourceProfiles(host_cpus=64).by_slug("gpu")
    limits = gpu.cgroup_limits()
    assert (limits.memory_bytes, limits.cpus, limits.pids) == (32 * GiB, 8.0, 4096)
    assert gpu.kubespawner_override() == {
        "mem_limit": 32 * GiB,
        "cpu_limit": 8.0,
        "extra_resource_limits": {"nvidia.com/gpu": "1"},
    }
    assert "extra_resource_limits" not in ResourceProfiles().by_slug("standard").kubespawner_override()
    assert gpu.session_environ() == {"MEM_LIMIT": str(32 * GiB), "CPU_LIMIT": "8"}
    profile_list = ResourceProfiles().kubespawner_profile_list()
    assert [p["slug"] for p in profile_list] == ["standard", "large", "gpu"]
    assert [p["default"] for p in profile_list] == [True, False, False]


def test_admission_limits_sessions_in_total_and_per_repository():
    admission = Admission(max_sessions=3, per_repo_quota=2, retry_after=120)
    admission.admit("s1", "repo-a")
    admission.admit("s2", "repo-a")
    with pytest.raises(AdmissionRefused) as per_repo:
        admission.admit("s3", "repo-a")
    assert per_repo.value.status_code == 429 and per_repo.value.retry_after == 120
    assert "this repository" in per_repo.value.message and "2 minute" in per_repo.value.message
    assert per_repo.value.to_event()["phase"] == "failed"

    admission.admit("s3", "repo-b")
    with pytest.raises(AdmissionRefused) as full:
        admission.check("repo-c")
    assert "full" in full.value.message and "3 of 3" in full.value.message

    admission.release("s1")
    admission.admit("s4", "repo-a")  # a freed slot is usable again
    admission.admit("s4", "repo-a")  # and admitting twice counts once
    assert (admission.running(), admission.running("repo-a")) == (3, 2)


def test_admission_with_limit_zero_admits_everything():
    admission = Admission(max_sessions=0)
    for i in range(50):
        admission.admit(f"s{i}", "repo")
    assert admission.running("repo") == 50


def test_admission_limit_comes_from_free_memory_and_disk_unless_configured(tmp_path):
    """No limit configured (the default) is no longer "no limit": the host's free memory and disk decide."""
    available = memory_available()
    admission = Admission(memory_per_session=int(available / 2.5), sessions_dir=str(tmp_path))
    assert admission.max_sessions is None
    assert admission.limit == 2  # memory for two and a half sessions: two
    admission.admit("s1", "repo")
    admission.admit("s2", "repo")
    with pytest.raises(AdmissionRefused, match=r"full \(2 of 2 sessions"):
        admission.admit("s3", "repo")

    free = shutil.disk_usage(tmp_path).free
    by_disk = Admission(disk_per_session=int(free / 3.5), disk_reserve=0, sessions_dir=str(tmp_path))
    assert by_disk.limit == 3
    capacity, why = by_disk.host_capacity()
    assert "memory available" in why and "disk free" in why

    huge = Admission(memory_per_session=available * 4)
    assert huge.limit == 1  # a host that holds less than one session still runs one


def test_admission_refuses_a_session_the_disk_could_not_hold(tmp_path):
    admission = Admission(max_sessions=0, sessions_dir=str(tmp_path), disk_reserve=0)
    free = shutil.disk_usage(tmp_path).free
    admission.admit("small", "repo", disk_bytes=2**20)
    with pytest.raises(AdmissionRefused) as refused:
        admission.admit("big", "repo", disk_bytes=free + 2**40)
    assert refused.value.status_code == 503 and refused.value.retry_after > 0
    assert "disk is too full" in refused.value.message and "\n" not in refused.value.message
    assert admission.running() == 1  # a refused session takes no slot
