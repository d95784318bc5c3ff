"""repro.machine: the CPU model that run tags and speed figures carry."""

import platform

from repro.machine import cpu_label, cpu_model


def test_cpu_model_reads_the_first_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
                    "processor\t: 1\nmodel name\t: Other\n")
    assert cpu_model(info) == "AMD EPYC"
    assert cpu_label(2, info) == f"cpu (AMD EPYC, {platform.machine()}, 2 threads)"


def test_cpu_model_falls_back_without_cpuinfo(tmp_path):
    missing = tmp_path / "absent"
    assert cpu_model(missing) == (platform.processor() or platform.machine())
    # an empty model name is not a model
    blank = tmp_path / "blank"
    blank.write_text("model name\t:   \n")
    assert cpu_model(blank) == (platform.processor() or platform.machine())


def test_cpu_label_does_not_repeat_the_architecture(tmp_path, monkeypatch):
    monkeypatch.setattr(platform, "processor", lambda: "")
    assert cpu_label(1, tmp_path / "absent") == f"cpu ({platform.machine()}, 1 threads)"
