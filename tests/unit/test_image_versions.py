"""The images terafleet builds are named by the collection's version in the roles' defaults, never :latest,
and bin/release-images tags them with that same version."""

import subprocess

import yaml


def version(repo_root):
    return yaml.safe_load((repo_root / "galaxy.yml").read_text())["version"]


def test_the_worker_image_defaults_name_the_collections_version(repo_root):
    expected = f"terafleet/worker:{version(repo_root)}"
    for role, variable in (("celery_worker", "celery_worker_image"), ("flower", "flower_image")):
        defaults = yaml.safe_load((repo_root / "roles" / role / "defaults" / "main.yml").read_text())
        assert defaults[variable] == expected, f"{variable} should be {expected}"
        spec = yaml.safe_load((repo_root / "roles" / role / "meta" / "argument_specs.yml").read_text())
        assert spec["argument_specs"]["main"]["options"][variable]["default"] == expected


def test_no_role_default_names_a_latest_tag(repo_root):
    for path in sorted((repo_root / "roles").glob("*/defaults/main.yml")):
        defaults = yaml.safe_load(path.read_text()) or {}
        latest = {name: value for name, value in defaults.items()
                  if name.endswith("_image") and isinstance(value, str) and value.startswith("terafleet/")
                  and (value.endswith(":latest") or ":" not in value)}
        assert not latest, f"{path}: {latest}"


def test_release_images_refuses_bad_arguments_before_building(repo_root):
    script = repo_root / "bin" / "release-images"
    for argv, message in (([], "--registry is missing"), (["--registry", "not a host"], "is not HOST[:PORT][/PATH]"),
                          (["--registry", "r:5000", "--sign"], "unknown argument '--sign'")):
        result = subprocess.run([str(script), *argv], capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr
