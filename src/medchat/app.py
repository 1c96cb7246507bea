"""A Gradio chat page serving a trained run: streamed answers, the medical disclaimer, sampling controls.

    python -m medchat.app run_dir=runs/2026-11-22_10-00-00             # http://127.0.0.1:7860
    python -m medchat.app run_dir=RUN port=8080 host=0.0.0.0            # reachable from other machines
    python -m medchat.app run_dir=RUN port=0                            # any free port (printed)

Nothing is sent anywhere but to the browser that opens the page: no share link, no Gradio analytics or
version check. Answers are generated one at a time (a queue), each with the sliders' settings.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Iterator, Optional

import hydra
from omegaconf import DictConfig

from medchat.hydra_apps import quiet_libraries, quote_free_text, store_app_config, user_errors
from medchat.config import ConfigError

# Before gradio is imported: it reads these at import time.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass
class AppConfig:
    run_dir: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 7860  # 0: any free port
    title: Optional[str] = None  # null: "medchat: <model> on <dataset>"
    system_prompt: Optional[str] = None  # null: the run's; "": none
    quant: Optional[str] = None  # null: as trained
    # true: the adapter folded into the base (a 4-bit base dequantized to 16-bit first), as evaluate.py scores it;
    # ~10x faster decoding on a GPU (static cache + compiled decoding: bench/RESULTS.md), 16-bit memory.
    # false: the base as `quant` says with the adapter unmerged (4-bit memory, as during training)
    merge: bool = True
    base: Optional[str] = None
    check_base: bool = True  # false: skip the adapter's recorded base name (its shapes are still checked)
    max_context: Optional[int] = None
    # the sliders' starting values
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    verbose: bool = False


store_app_config("app", AppConfig, __doc__)


def check_port(host: str, port: int) -> int:
    """The port to serve on; a clear error when another program listens there. port=0 picks a free one."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"port={port} is not a TCP port (0-65535)")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT is free to reuse
        try:
            s.bind((host, port))
        except OSError as e:
            raise ConfigError(f"port={port}: {host}:{port} is already in use ({e.strerror}); stop the program "
                              f"using it or pass port=<another port> (port=0 picks a free one)") from e
        return s.getsockname()[1]


def respond_fn(bot):
    """The ChatInterface callback: yields the answer so far as it streams in."""
    import gradio as gr

    from medchat.inference import chat_settings

    def respond(message: str, history: list, max_new_tokens: float, temperature: float, top_p: float,
                repetition_penalty: float) -> Iterator[str]:
        try:
            settings = chat_settings(max_new_tokens, temperature, top_p, repetition_penalty)
            messages = bot.conversation(history, message)
            text = ""
            for piece in bot.stream(messages, settings):
                text += piece
                yield text.lstrip()
        except ConfigError as e:  # empty question, too long for the context, bad slider value
            raise gr.Error(str(e)) from e
        if not text.strip():
            yield "(the model's answer was empty)"

    return respond


def build_demo(bot, cfg, title: str):
    import gradio as gr

    from medchat.inference import DISCLAIMER

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"## {title}\n\n⚠️ **{DISCLAIMER}**", elem_id="disclaimer")
        sliders = [
            gr.Slider(16, 2048, value=cfg.max_new_tokens, step=16, label="Max new tokens", render=False),
            gr.Slider(0.0, 1.5, value=cfg.temperature, step=0.05, label="Temperature (0 = greedy)", render=False),
            gr.Slider(0.05, 1.0, value=cfg.top_p, step=0.05, label="Top-p", render=False),
            gr.Slider(1.0, 2.0, value=cfg.repetition_penalty, step=0.05, label="Repetition penalty", render=False),
        ]
        gr.ChatInterface(
            respond_fn(bot),
            chatbot=gr.Chatbot(label="Conversation", height=420, render=False),
            textbox=gr.Textbox(placeholder="Describe your symptoms or ask a question…", show_label=False, label="",
                               scale=7, autofocus=True, submit_btn=True, stop_btn=True, elem_id="question",
                               render=False),
            additional_inputs=sliders,
            additional_inputs_accordion=gr.Accordion("Sampling settings", open=True, render=False),
            analytics_enabled=False,
            fill_height=False,
        )
    return demo


def default_title(run) -> str:
    return f"medchat: {run.cfg.model.name} fine-tuned on {run.cfg.dataset.name} ({run.dir.name})"


@user_errors("medchat.app", AppConfig)
def run(cfg) -> None:
    from medchat.inference import ChatModel, chat_settings
    from medchat.runs import open_run

    opened = open_run(cfg.run_dir)
    chat_settings(cfg.max_new_tokens, cfg.temperature, cfg.top_p, cfg.repetition_penalty)  # the sliders' start
    port = check_port(cfg.host, cfg.port)  # before minutes of model loading, not after
    quiet_libraries(cfg.verbose)
    bot = ChatModel.load(cfg.run_dir, quant=cfg.quant, base=cfg.base, check_base=cfg.check_base, merge=cfg.merge,
                         system_prompt=cfg.system_prompt, max_context=cfg.max_context)
    demo = build_demo(bot, cfg, cfg.title or default_title(opened))
    check_port(cfg.host, port)  # still free after loading?
    print(f"medchat app: serving {cfg.run_dir} on http://{cfg.host}:{port}", flush=True)
    demo.queue(default_concurrency_limit=1).launch(
        server_name=cfg.host, server_port=port, share=False, inbrowser=False, show_error=True, quiet=True,
        ssr_mode=False, pwa=False, mcp_server=False)


@hydra.main(version_base="1.3", config_path=None, config_name="app")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    quote_free_text(("system_prompt", "title"))
    _hydra_main()


if __name__ == "__main__":
    main()
