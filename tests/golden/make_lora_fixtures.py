"""Makes tests/golden/lora_peft.safetensors: PEFT LoRA, rsLoRA and DoRA layers with
nonzero adapters, their outputs and the gradients of sum(y * upstream) with respect to
the adapter arrays. Run from the repository root:

    /path/to/python tests/golden/make_lora_fixtures.py

Needs torch, peft and safetensors.
"""
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

IN, OUT, RANK, ALPHA, BATCH = 32, 16, 4, 8.0, 5


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(IN, OUT, bias=True)

    def forward(self, x):
        return self.proj(x)


def make_case(name, use_rslora, use_dora, seed):
    torch.manual_seed(seed)
    net = Net()
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=["proj"],
                        use_rslora=use_rslora, use_dora=use_dora)
    model = get_peft_model(net, config)
    layer = model.base_model.model.proj
    out = {}
    with torch.no_grad():
        if use_dora:
            out[f"{name}.magnitude_init"] = layer.lora_magnitude_vector["default"].weight.clone()
        # Nonzero adapters so every term of the forward pass shows.
        layer.lora_A["default"].weight.copy_(torch.randn(RANK, IN) * 0.2)
        layer.lora_B["default"].weight.copy_(torch.randn(OUT, RANK) * 0.2)
        if use_dora:
            mag = layer.lora_magnitude_vector["default"].weight
            mag.copy_(mag * (1.0 + 0.3 * torch.rand(OUT)))
    x = torch.randn(BATCH, IN)
    upstream = torch.randn(BATCH, OUT)
    y = model(x)
    (y * upstream).sum().backward()
    out[f"{name}.weight"] = layer.base_layer.weight.detach().clone()
    out[f"{name}.bias"] = layer.base_layer.bias.detach().clone()
    out[f"{name}.lora_A"] = layer.lora_A["default"].weight.detach().clone()
    out[f"{name}.lora_B"] = layer.lora_B["default"].weight.detach().clone()
    out[f"{name}.x"] = x
    out[f"{name}.upstream"] = upstream
    out[f"{name}.y"] = y.detach().clone()
    out[f"{name}.grad_lora_A"] = layer.lora_A["default"].weight.grad.clone()
    out[f"{name}.grad_lora_B"] = layer.lora_B["default"].weight.grad.clone()
    if use_dora:
        mag = layer.lora_magnitude_vector["default"].weight
        out[f"{name}.lora_magnitude"] = mag.detach().clone()
        out[f"{name}.grad_lora_magnitude"] = mag.grad.clone()
    # The merged weight PEFT writes.
    merged = model.merge_and_unload()
    out[f"{name}.merged_weight"] = merged.proj.weight.detach().clone()
    return out


def main():
    tensors = {}
    tensors.update(make_case("lora", False, False, 1))
    tensors.update(make_case("rslora", True, False, 2))
    tensors.update(make_case("dora", False, True, 3))
    tensors = {k: v.contiguous().float() for k, v in tensors.items()}
    save_file(tensors, "tests/golden/lora_peft.safetensors",
              metadata={"in": str(IN), "out": str(OUT), "rank": str(RANK), "alpha": str(ALPHA)})


if __name__ == "__main__":
    main()
