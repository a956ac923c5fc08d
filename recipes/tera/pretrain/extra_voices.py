"""A TERA pretraining corpus: the quick profile's train split plus 40 extra unlabelled voices (an experiment).

    python recipes/tera/pretrain/extra_voices.py      # writes data/synth_speech_extra (needs data/synth_speech)
    python recipes/tera/pretrain/train.py recipes/tera/pretrain/configs/synth.yaml \
        task_args.corpus=data/synth_speech_extra trainer.out_dir=runs/tera/pretrain_extravoices

No extra voice repeats a dev or test voice's (language, variant) pair; m8 (only in test) is not used; texts of the
dev and test splits are excluded. Kept in history only (removed in the next commit): it did not help the probe."""
import json, sys, time
from pathlib import Path
import numpy as np
from mmseq.data.synth.espeak import Voice
from mmseq.data.synth.sentences import generate_sentence
from mmseq.data.synth import speech as S

def main():
    root = Path("data/synth_speech_extra"); quick = Path("data/synth_speech")
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(123)
    langs = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd"]
    variants = [f"m{i}" for i in range(1, 8)] + [f"f{i}" for i in range(1, 6)]
    held_out = {(v.language, v.variant) for split in ("dev", "test") for v in S.VOICES[split]}
    voices, seen = [], set()
    while len(voices) < 40:
        lang, var = langs[rng.integers(len(langs))], variants[rng.integers(len(variants))]
        if (lang, var) in held_out or (lang, var) in seen:
            continue
        seen.add((lang, var))
        pitch = int(rng.integers(35, 73)); rate = int(rng.integers(150, 186))
        voices.append(Voice(f"xtra{len(voices):02d}", lang, var, pitch, rate))
    texts_out = {json.loads(l)["text"] for s in ("dev", "test") for l in open(quick / f"{s}.jsonl")}
    per_voice = 40
    tasks = []
    for v in voices:
        items = []
        while len(items) < per_voice:
            en, _, _ = generate_sentence(rng)
            if en in texts_out:
                continue
            uid = f"{v.name}_sen{len(items):04d}"
            items.append((uid, en, en + ".", f"wav/{v.name}/{uid}.wav"))
        tasks.append((str(root), S.asdict(v), items))
    t0 = time.time()
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(2, initializer=S._worker_init) as pool:
        results = pool.map(S._synthesise_speaker, tasks)
    print("synthesised", sum(len(r) for r in results), "in", round(time.time() - t0, 1), "s")
    records = []
    for line in open(quick / "train.jsonl"):
        r = json.loads(line); r["audio"] = "../synth_speech/" + r["audio"]; records.append(r)
    for (out, vf, items), res in zip(tasks, results):
        for (uid, text, speak, rel), meta in zip(items, res):
            records.append({"id": uid, "audio": rel, "duration": meta["duration"], "text": text, "speaker": vf["name"]})
    with open(root / "train.jsonl", "w") as f:
        for r in records: f.write(json.dumps(r) + "\n")
    with open(root / "dev.jsonl", "w") as f:
        for line in open(quick / "dev.jsonl"):
            r = json.loads(line); r["audio"] = "../synth_speech/" + r["audio"]; f.write(json.dumps(r) + "\n")
    print(len(records), "train utterances,", round(sum(r["duration"] for r in records) / 3600, 2), "h;", len(voices), "extra voices")
    print([ (v.language, v.variant, v.pitch, v.rate) for v in voices])


if __name__ == '__main__':
    main()
