"""Two processes with the gloo backend, as ``torchrun --nproc-per-node 2`` would start them on CPU."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from csrinfer.model.checkpoint import read_checkpoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from csrinfer.train import loop
    from tests.train.conftest import tiny_config

    built = []
    real_build = loop.build_model
    loop.build_model = lambda cfg: built.append(real_build(cfg)) or built[-1]  # keep the model to compare ranks
    loop.train(tiny_config(), data, out, max_iters=2, device="cpu", progress=False)
    torch.save({k: v.clone() for k, v in built[0].state_dict().items()}, os.path.join(out, f"rank{rank}.pt"))


def test_two_gloo_processes_train_in_step(tiny_data, tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tiny_data), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    final = read_checkpoint(tmp_path / "final.pth")["state_dict"]
    assert read_checkpoint(tmp_path / "last.pth")["train_state"]["total_batch_size"] == 4  # 2 per process x 2
    for key, value in final.items():  # DDP kept both replicas identical, and rank 0 saved them
        torch.testing.assert_close(ranks[0][key], value)
        torch.testing.assert_close(ranks[1][key], value)
    # both processes trained (the weights moved from the shared initialisation)
    torch.manual_seed(0)
    from csrinfer.model import build_model
    from tests.train.conftest import tiny_config

    fresh = build_model(tiny_config()).state_dict()
    key = "head.cate_out.weight"
    assert not torch.allclose(fresh[key], final[key])
