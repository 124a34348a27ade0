"""A TaskManager's interpreter outlives jobs: a job shipping changed code must run that code."""

import shutil
import subprocess
import sys
import textwrap

from scripts.stack import PROJECT_DIR

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {project!r})
    import udfs.feature_batches as first             # what an earlier job left imported
    sys.path.append({shipped!r})                      # the next job's files, behind the earlier job's
    import pathlib
    from jobs.shipped_code import source_hash, stale_modules, use_shipped_code
    # The fingerprint the next job's client computed, of its udfs package.
    files = pathlib.Path({shipped!r}, "udfs")
    shipped = {{"udfs": source_hash(files / "__init__.py")}}
    shipped.update({{f"udfs.{{p.stem}}": source_hash(p) for p in files.glob("*.py") if p.stem != "__init__"}})
    assert stale_modules(shipped) == ["udfs.feature_batches"], stale_modules(shipped)
    use_shipped_code(shipped)
    import udfs.feature_batches as second
    print(first.SHIPPED_MARK if hasattr(first, "SHIPPED_MARK") else "old", second.SHIPPED_MARK, sys.path[0])
""")


def test_a_job_with_changed_code_runs_its_own_not_the_modules_left_imported(tmp_path):
    shipped = tmp_path / "job-files"
    shutil.copytree(f"{PROJECT_DIR}/udfs", shipped / "udfs", ignore=shutil.ignore_patterns("__pycache__"))
    with open(shipped / "udfs" / "feature_batches.py", "a") as f:
        f.write("\nSHIPPED_MARK = 'new'\n")
    child = CHILD.format(project=PROJECT_DIR, shipped=str(shipped))
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["old", "new", str(shipped)]
