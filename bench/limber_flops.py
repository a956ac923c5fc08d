"""FLOPs of one LiMBeR item at the CC3M config's sizes (CLIP RN50x16 at 384 px, GPT-J 6B), counted by
``torch.utils.flop_counter`` on the meta device: no weights are read or allocated, nothing downloads. Says how much
of a training step the frozen encoder is, i.e. what caching its features can save at that scale.

    python bench/limber_flops.py
"""
import torch
from torch.utils.flop_counter import FlopCounterMode
import open_clip
from transformers import GPTJConfig, GPTJForCausalLM

with torch.device("meta"):
    clip = open_clip.create_model("RN50x16", pretrained=None, device="meta")
    visual = clip.visual.eval()  # with its attention pool: a little more than the grid features need
    x = torch.randn(1, 3, 384, 384)
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            visual(x)
    enc = fc.get_total_flops()
    lm = GPTJForCausalLM(GPTJConfig()).eval()  # GPT-J 6B's defaults: 28 layers x 4096, vocabulary 50400
    lm.requires_grad_(False)
    tokens = 144 + 4 + 16  # 144 soft prompts, "A picture of" (3 GPT-2 tokens, rounded up to 4), a 16-token caption
    emb = torch.randn(1, tokens, 4096, requires_grad=True)
    with FlopCounterMode(display=False) as fc:
        out = lm(inputs_embeds=emb).logits
        out.sum().backward()
    lm_fb = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        with torch.no_grad():
            lm(inputs_embeds=emb)
    lm_f = fc.get_total_flops()
print(f"RN50x16 image tower at 384 px, forward: {enc / 1e9:.1f} GFLOP an image")
print(f"GPT-J 6B, {tokens} positions: forward {lm_f / 1e12:.2f} TFLOP, forward + backward to the inputs {lm_fb / 1e12:.2f} TFLOP an item")
print(f"encoder share of a training item: {enc / (enc + lm_fb):.1%}; of an evaluation loss item: {enc / (enc + lm_f):.1%}")
