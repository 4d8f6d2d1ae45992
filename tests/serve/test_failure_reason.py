"""Why a tritonserver start failed, read from recorded log lines (no server needed)."""

import pytest

from csrinfer.serve.server import explain_failure

# What every start on a machine without a usable NVIDIA driver logs first.
CPU_NOISE = '''W1126 16:41:25.638812 10444 pinned_memory_manager.cc:273] "Unable to allocate pinned system memory, pinned memory pool will not be available: CUDA driver version is insufficient for CUDA runtime version"
I1126 16:41:25.638888 10444 cuda_memory_manager.cc:117] "CUDA memory pool disabled"
E1126 16:41:25.638959 10444 server.cc:241] "CudaDriverHelper has not been initialized."
I1126 16:41:25.639227 10444 server.cc:604]
+------------------+------+
| Repository Agent | Path |
+------------------+------+
'''
BUSY_HTTP = '''I1126 16:41:25.641586 10444 grpc_server.cc:2558] "Started GRPCInferenceService at 127.0.0.1:34037"
I1126 16:41:25.641776 10444 http_server.cc:4713] "Started HTTPService at 127.0.0.1:40829"
E1126 16:41:25.683037 10444 main.cc:257] "failed to start HTTP service: Unavailable - Socket '127.0.0.1:40829' already in use "
'''
BUSY_GRPC = '''E1126 16:41:35.365068914   10519 chttp2_server.cc:1060]                UNKNOWN:No address added out of total 1 resolved for '127.0.0.1:60599' {children:[UNKNOWN:Address already in use {syscall:"bind", errno:98}]}
E1126 16:41:35.370250 10519 main.cc:245] "failed to start GRPC service: Unavailable - Socket '127.0.0.1:60599' already in use "
'''
POLL_FAILED = '''E1126 16:41:46.292756 10630 model_repository_manager.cc:1460] "Poll failed for model directory 'data': failed to open text file for read /repo/data/config.pbtxt: No such file or directory"
I1126 16:41:46.292800 10630 server.cc:604]
error: creating server: Internal - failed to load all models
'''
LOAD_FAILED = '''I1126 16:41:52.007311 10692 pb_stub.cc:366]  Failed to initialize Python stub: RuntimeError: weights missing
E1126 16:41:52.298741 10682 backend_model.cc:692] "ERROR: Failed to create instance: RuntimeError: weights missing\\n\\nAt:\\n  /repo/bad/1/model.py(3): initialize\\n"
E1126 16:41:52.298846 10682 model_lifecycle.cc:642] "failed to load 'bad' version 1: Internal: RuntimeError: weights missing\\n\\nAt:\\n  /repo/bad/1/model.py(3): initialize\\n"
I1126 16:41:52.298865 10682 model_lifecycle.cc:777] "failed to load 'bad'"
| bad   | 1       | UNAVAILABLE: Internal: RuntimeError: weights missing |
error: creating server: Internal - failed to load all models
'''


@pytest.mark.parametrize("log, reason", [
    (CPU_NOISE + BUSY_HTTP, "failed to start HTTP service: Unavailable - Socket '127.0.0.1:40829' already in use"),
    (CPU_NOISE + BUSY_GRPC, "failed to start GRPC service: Unavailable - Socket '127.0.0.1:60599' already in use"),
    (CPU_NOISE + POLL_FAILED, "Poll failed for model directory 'data': failed to open text file for read "
                              "/repo/data/config.pbtxt: No such file or directory"),
    (CPU_NOISE + LOAD_FAILED, "failed to load 'bad' version 1: Internal: RuntimeError: weights missing"),
], ids=["busy-http", "busy-grpc", "poll-failed", "load-failed"])
def test_the_line_naming_the_cause_wins_over_gpu_noise(log, reason):
    assert explain_failure(log) == reason


def test_gpu_lines_are_the_reason_only_when_nothing_else_is():
    assert explain_failure(CPU_NOISE) == "CudaDriverHelper has not been initialized."
    other = 'E1126 16:41:25.700000 10444 server.cc:300] "the repository is not readable"\n'
    assert explain_failure(CPU_NOISE + other) == "the repository is not readable"


def test_an_empty_log_says_so():
    assert explain_failure("") == "no output"
    assert explain_failure("\n  \n") == "no output"
