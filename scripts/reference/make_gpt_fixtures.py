"""Writes the GPT / GPT-2 parity fixtures into tests/fixtures/ (run by scripts/make-fixtures.sh).

- tiny-gpt2/: a tiny random GPT2LMHeadModel with a byte-level BPE tokenizer of 300 tokens trained on
  MRPC train (3 layers x 4 heads, n_inner 24,
  scale_attn_by_inverse_layer_idx and reorder_and_upcast_attn on), weights drawn with std 0.4 so
  attention is far from uniform.
- tiny-gpt2-cls/: a tiny random GPT2ForSequenceClassification (3 labels, pad_token_id 0, default
  scaling, n_inner unset).
- tiny-gpt/: a tiny random OpenAIGPTLMHeadModel (post-LayerNorm, afn gelu) with a hand-made 64-token
  OpenAI GPT tokenizer (tokenizer.json, as OpenAIGPTTokenizerFast saves it).
- tiny-gpt2-pruned/: tiny-gpt2 after transformers' prune_heads({0: [1], 2: [0, 3]}).
- gpt_parity.safetensors: inputs (right padding), head masks, and for every model and each of
  the cases none / [layers, heads] mask with zeros and 0.5 / per-example mask: transformers'
  logits, loss, attentions and hidden states; the gradient of the loss with respect to a
  [layers, heads] mask of ones (batch-mean token loss) and to a per-example mask (sum over
  examples of each example's mean token loss); and the pruned model's logits.
- tiny-bert-mlm/, tiny-roberta-mlm/: tiny random BertForMaskedLM and RobertaForMaskedLM, with the same
  references under bert_mlm.* and roberta_mlm.* (labels: mlm_labels); tiny-bert's character vocabulary
  and a 64-token RoBERTa-style tokenizer (`roberta_tokenizer`), so `--task mlm` reads text.
  `make_gpt_fixtures.py --roberta-tokenizer` writes only the latter's files.
- tiny_token_ids.txt: token ids in run_prune_gpt's np.loadtxt format (one sequence per line).
"""
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2ForSequenceClassification,
                          GPT2LMHeadModel, OpenAIGPTConfig, OpenAIGPTLMHeadModel, RobertaConfig, RobertaForMaskedLM)

from common import FIXTURES, check_versions

torch.manual_seed(0)
torch.set_num_threads(2)
L, H = 3, 4
V = 300  # the tiny byte-level BPE tokenizer's size (256 bytes, <|endoftext|>, 43 merges)
SMALL_V = 64  # the other models' vocabulary: smaller logits keep the fixture small


def tiny_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer trained on MRPC train sentences, so the tiny models
    read real text (tokenizer.json, vocab.json and merges.txt, as GPT2TokenizerFast saves them)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    from common import read_mrpc

    bpe = ByteLevelBPETokenizer()
    rows = read_mrpc("train")
    bpe.train_from_iterator([r[0] for r in rows] + [r[1] for r in rows], vocab_size=V,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                            eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    assert len(tok) == V, len(tok)
    return tok


def gpt_tokenizer():
    """OpenAI GPT's tokenizer for tiny-gpt's 64 ids, as OpenAIGPTTokenizerFast saves it (lower-cased
    BERT pre-tokenisation, BPE whose last symbol of a word ends in "</w>"), so tiny-gpt reads text.
    Hand-made to fit 64 ids: <unk>, the 26 letters inside and at the end of a word, four punctuation
    marks, and seven merges (the, cat, sat, mat, on); anything else is <unk>."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import OpenAIGPTTokenizerFast

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    merges = [("t", "h"), ("th", "e</w>"), ("a", "t</w>"), ("c", "at</w>"), ("s", "at</w>"), ("m", "at</w>"),
              ("o", "n</w>")]
    tokens = (["<unk>"] + letters + [c + "</w>" for c in letters] + [p + "</w>" for p in ".,()"]
              + [a + b for a, b in merges])
    assert len(tokens) == SMALL_V, len(tokens)
    bpe = Tokenizer(BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, unk_token="<unk>",
                        end_of_word_suffix="</w>", fuse_unk=False))
    bpe.add_special_tokens(["<unk>"])
    bpe.normalizer = normalizers.BertNormalizer(lowercase=True)
    bpe.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bpe.decoder = decoders.BPEDecoder(suffix="</w>")
    return OpenAIGPTTokenizerFast(tokenizer_object=bpe, unk_token="<unk>")


def roberta_tokenizer():
    """A 64-token tokenizer for tiny-roberta-mlm, so `--task mlm` reads text and finds its mask
    token: RoBERTa's special tokens at RoBERTa's ids (<s> 0, <pad> 1, </s> 2, <unk> 3; <mask> 4),
    lower-cased characters and a few merges of a BPE trained on MRPC train (a byte-level
    alphabet alone would need 256 ids), and RoBERTa's `<s> A </s></s> B </s>` template."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from common import read_mrpc

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.normalizer = normalizers.Lowercase()
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    rows = read_mrpc("train")
    trainer = trainers.BpeTrainer(vocab_size=SMALL_V, special_tokens=specials, limit_alphabet=40,
                                  show_progress=False)
    bpe.train_from_iterator([r[0] for r in rows] + [r[1] for r in rows], trainer=trainer)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
    assert [tok.convert_tokens_to_ids(t) for t in specials] == [0, 1, 2, 3, 4]
    assert len(tok) == SMALL_V, len(tok)
    return tok


def randomise(model, std=0.4):
    """Larger weights than the default init so logits and attention vary."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ("ln" in name or "LayerNorm" in name or "layer_norm" in name) and name.endswith("weight"):
                p.normal_(1.0, 0.1)
            elif p.dim() == 2:
                p.normal_(0, std)
            else:
                p.normal_(0, 0.1)
    return model.eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    b, t = 3, 9
    ids = torch.randint(1, SMALL_V, (b, t), generator=g)  # valid ids of every fixture model
    mask = torch.ones(b, t, dtype=torch.long)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    ids[mask == 0] = 0
    labels = ids.masked_fill(mask == 0, -100)
    mask2d = torch.ones(L, H)
    mask2d[0, 1] = 0
    mask2d[1, 0] = 0
    mask2d[1, 3] = 0
    mask2d[2, 2] = 0.5
    mask3d = (torch.rand(b, L, H, generator=g) > 0.4).float()
    return ids, mask, labels, mask2d, mask3d


def per_example_loss(logits, labels, causal):
    """Sum over examples of each example's mean token loss (the per-example estimator's loss)."""
    if causal:
        logits, labels = logits[:, :-1], labels[:, 1:]
    tok = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100,
                                            reduction="none")
    counted = (labels != -100).float()
    return (tok.sum(-1) / counted.sum(-1).clamp(min=1)).sum()


def reference(prefix, model, ids, mask, labels, mask2d, mask3d, tensors, lm=True, causal=True):
    as5d = mask3d.permute(1, 0, 2)[:, :, :, None, None]
    for case, hm in [("none", None), ("2d", mask2d), ("3d", as5d)]:
        with torch.no_grad():
            o = model(input_ids=ids, attention_mask=mask, head_mask=hm, labels=labels if lm else None,
                      output_attentions=True, output_hidden_states=True)
        tensors[f"{prefix}.{case}.logits"] = o.logits
        if lm:
            tensors[f"{prefix}.{case}.loss"] = o.loss.reshape(1)
        for i, a in enumerate(o.attentions):
            tensors[f"{prefix}.{case}.attentions.{i}"] = a
        for i, h in enumerate(o.hidden_states):
            tensors[f"{prefix}.{case}.hidden_states.{i}"] = h
    if lm:
        xi = torch.ones(L, H, requires_grad=True)
        model(input_ids=ids, attention_mask=mask, head_mask=xi, labels=labels).loss.backward()
        tensors[f"{prefix}.grad_2d"] = xi.grad
        xi3 = torch.ones(ids.shape[0], L, H, requires_grad=True)
        logits = model(input_ids=ids, attention_mask=mask, head_mask=xi3.permute(1, 0, 2)[:, :, :, None, None]).logits
        per_example_loss(logits, labels, causal=causal).backward()
        tensors[f"{prefix}.grad_3d"] = xi3.grad


def main():
    check_versions()
    ids, mask, labels, mask2d, mask3d = inputs()
    tensors = {"input_ids": ids, "attention_mask": mask, "labels": labels, "head_mask_2d": mask2d,
               "head_mask_3d": mask3d}

    gpt2 = randomise(GPT2LMHeadModel(GPT2Config(
        vocab_size=V, n_positions=16, n_embd=16, n_layer=L, n_head=H, n_inner=24,
        activation_function="gelu_new", scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True,
        bos_token_id=0, eos_token_id=0, attn_implementation="eager")))
    gpt2.save_pretrained(os.path.join(FIXTURES, "tiny-gpt2"), safe_serialization=True)
    tok = tiny_tokenizer()
    tok.save_pretrained(os.path.join(FIXTURES, "tiny-gpt2"))
    reference("gpt2", gpt2, ids, mask, labels, mask2d, mask3d, tensors)

    cls = randomise(GPT2ForSequenceClassification(GPT2Config(
        vocab_size=SMALL_V, n_positions=16, n_embd=16, n_layer=L, n_head=H, num_labels=3, pad_token_id=0,
        attn_implementation="eager")))
    cls.save_pretrained(os.path.join(FIXTURES, "tiny-gpt2-cls"), safe_serialization=True)
    reference("gpt2_cls", cls, ids, mask, labels, mask2d, mask3d, tensors, lm=False)

    gpt = randomise(OpenAIGPTLMHeadModel(OpenAIGPTConfig(
        vocab_size=SMALL_V, n_positions=16, n_embd=16, n_layer=L, n_head=H, afn="gelu", attn_implementation="eager")))
    gpt.save_pretrained(os.path.join(FIXTURES, "tiny-gpt"), safe_serialization=True)
    gpt_tokenizer().save_pretrained(os.path.join(FIXTURES, "tiny-gpt"))
    reference("gpt", gpt, ids, mask, labels, mask2d, mask3d, tensors)

    # Masked LM: BERT and RoBERTa with MLM heads; labels on a seeded 30 % of the real tokens.
    g = torch.Generator().manual_seed(5)
    mlm_labels = ids.masked_fill((torch.rand(ids.shape, generator=g) > 0.3) | (mask == 0), -100)
    tensors["mlm_labels"] = mlm_labels
    for prefix, cls_, cfg in [
        ("bert_mlm", BertForMaskedLM, BertConfig(vocab_size=SMALL_V, hidden_size=16, num_hidden_layers=L,
                                                 num_attention_heads=H, intermediate_size=24,
                                                 max_position_embeddings=16, attn_implementation="eager")),
        ("roberta_mlm", RobertaForMaskedLM, RobertaConfig(vocab_size=SMALL_V, hidden_size=16, num_hidden_layers=L,
                                                          num_attention_heads=H, intermediate_size=24,
                                                          max_position_embeddings=18, pad_token_id=1,
                                                          attn_implementation="eager")),
    ]:
        m = randomise(cls_(cfg), std=0.2)  # as tiny-bert: post-LayerNorm encoders saturate at 0.4
        out = os.path.join(FIXTURES, f"tiny-{prefix.replace('_', '-')}")
        m.save_pretrained(out, safe_serialization=True)
        if prefix == "bert_mlm":  # tiny-bert's 64-token character vocabulary, so it reads text
            for name in ("vocab.txt", "tokenizer_config.json"):
                shutil.copy(os.path.join(FIXTURES, "tiny-bert", name), out)
        else:
            roberta_tokenizer().save_pretrained(out)
        reference(prefix, m, ids, mask, mlm_labels, mask2d, mask3d, tensors, causal=False)

    gpt2.prune_heads({0: [1], 2: [0, 3]})
    gpt2.save_pretrained(os.path.join(FIXTURES, "tiny-gpt2-pruned"), safe_serialization=True)
    tok.save_pretrained(os.path.join(FIXTURES, "tiny-gpt2-pruned"))
    with torch.no_grad():
        tensors["gpt2_pruned.logits"] = gpt2(input_ids=ids, attention_mask=mask).logits
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(FIXTURES, "gpt_parity.safetensors"))

    # run_prune_gpt's input format: one sequence of ids per line, equal lengths (np.loadtxt).
    g = np.random.default_rng(3)
    np.savetxt(os.path.join(FIXTURES, "tiny_token_ids.txt"), g.integers(0, V, size=(24, 12)), fmt="%d")


if __name__ == "__main__":
    if sys.argv[1:] == ["--roberta-tokenizer"]:
        # Only the tokenizer files of tiny-roberta-mlm (its weights and references unchanged).
        check_versions()
        roberta_tokenizer().save_pretrained(os.path.join(FIXTURES, "tiny-roberta-mlm"))
    else:
        main()
