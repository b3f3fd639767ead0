"""The sensor adds partitions for new sources and requests runs for them; it never deletes."""

import dagster as dg
import pytest

from fastapply_pipeline.definitions import build_defs
from fastapply_pipeline.defs.partitions import SOURCE_REPO_PARTITIONS
from fastapply_pipeline.defs.resources import FastApplyResource
from fastapply_pipeline.defs.sources.sensors import source_repos_sensor


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def evaluate(instance, config_path):
    # Entered and left, so the instance the context opens from the ref is closed here (test_automation.py).
    with dg.build_sensor_context(
        instance=instance, resources={"fastapply": FastApplyResource(config_path=str(config_path))}
    ) as context:
        return source_repos_sensor(context)


@pytest.mark.slow
def test_new_sources_become_partitions(instance, make_config):
    path, _ = make_config(
        [{"url": "https://github.com/vercel/next.js"}, {"path": "/srv/repo", "name": "local"}]
    )
    result = evaluate(instance, path)
    (request,) = result.dynamic_partitions_requests
    assert request.partitions_def_name == SOURCE_REPO_PARTITIONS
    assert list(request.partition_keys) == ["next.js", "local"]
    assert not result.run_requests  # building them is the automation sensor's job (on_missing)


@pytest.mark.slow
def test_existing_partitions_are_skipped_and_orphans_kept(instance, make_config):
    path, _ = make_config(
        [{"url": "https://github.com/vercel/next.js"}, {"url": "https://github.com/a/new-one"}]
    )
    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["next.js", "removed-from-file"])
    result = evaluate(instance, path)
    (request,) = result.dynamic_partitions_requests
    assert isinstance(request, dg.AddDynamicPartitionsRequest)
    assert list(request.partition_keys) == ["new-one"]

    instance.add_dynamic_partitions(SOURCE_REPO_PARTITIONS, ["new-one"])
    again = evaluate(instance, path)
    assert not again.run_requests and not again.dynamic_partitions_requests
    assert "already has a partition" in again.skip_reason.skip_message
    assert set(instance.get_dynamic_partitions(SOURCE_REPO_PARTITIONS)) == {
        "next.js",
        "new-one",
        "removed-from-file",
    }


@pytest.mark.slow
def test_an_invalid_settings_file_fails_the_tick_with_the_field(instance, tmp_path):
    bad = tmp_path / "fastapply.yaml"
    bad.write_text("sources:\n  - url: ext::sh\n")
    with pytest.raises(Exception, match=r"sources\.0.*remote-helper"):
        evaluate(instance, bad)


def test_per_repository_job_holds_the_per_repository_assets(make_config):
    path, _ = make_config([{"url": "https://github.com/vercel/next.js"}])
    job = build_defs(path).resolve_job_def("source_repo_job")
    assert job.partitions_def.name == SOURCE_REPO_PARTITIONS
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
        "cloned_repo",
        "code_snippets",
        "anthropic_triples",
        "openai_triples",
        "edit_triples",
    }
