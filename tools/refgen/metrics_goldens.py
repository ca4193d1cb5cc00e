#!/usr/bin/env python3
"""Goldens for crates/metrics from the reference implementations, offline.

* captioning: pycocoevalcap 1.2 (PTBTokenizer = stanford-corenlp-3.4.1 jar, BLEU, METEOR 1.5 jar,
  ROUGE-L, CIDEr-D); Java 17 needed;
* VQA accuracy: the official evaluator vqaEval.py, loaded as one file from the salesforce-lavis
  1.0.2 wheel (lavis/common/vqa_tools/vqa_eval.py), so none of LAVIS' dependencies are needed;
* xl-vlms' simplified VQA accuracy: its answer normaliser is lmms-eval's EvalAIAnswerProcessor
  (lmms_eval/tasks/_task_utils/vqa_eval_metric.py in the lmms-eval 0.7.3 wheel, loaded as one
  file; xl-vlms copies it), with xl-vlms' formula around it (see xl_vlms_goldens).

    python3 -m venv /work/venvs/metrics
    /work/venvs/metrics/bin/pip install pycocoevalcap==1.2
    /work/venvs/metrics/bin/pip download --no-deps -d pkgs salesforce-lavis==1.0.2 lmms-eval==0.7.3
    /work/venvs/metrics/bin/python tools/refgen/metrics_goldens.py \
        --wheel pkgs/salesforce_lavis-1.0.2-py3-none-any.whl \
        --lmms-wheel pkgs/lmms_eval-0.7.3-py3-none-any.whl --out crates/metrics/tests/fixtures

Writes vqa_official.json, vqa_xl_vlms.json, captions.json, ptb_tokens.json and the METEOR data
subsets. With --bench N it instead writes a
benchmark corpus (N images x 5 references, raw captions) and times pycocoevalcap on it.
"""
import argparse, contextlib, importlib.util, io, json, os, random, sys, tempfile, time, zipfile

# ---------------------------------------------------------------- VQA
VQA_QUIRKS = [  # (prediction, 10 human answers, answer type, note)
    ("two", ["2"] * 10, "number", "number word -> digit on prediction"),
    ("2", ["two"] * 10, "number", "GT is not digit-normalised: 'two' stays 'two'"),
    ("yes.", ["yes"] * 7 + ["no"] * 3, "yes/no", "trailing period stripped"),
    ("a dog", ["dog"] * 4 + ["puppy"] * 6, "other", "article dropped"),
    ("dont know", ["don't know"] * 3 + ["unknown"] * 7, "other", "contraction map"),
    ("1,000", ["1000"] * 2 + ["one thousand"] * 8, "number", "comma between digits"),
    ("red", ["red"] * 1 + ["blue"] * 9, "other", "1 match -> 0.3"),
    ("red", ["red"] * 2 + ["blue"] * 8, "other", "2 matches -> 0.6"),
    ("red", ["red"] * 3 + ["blue"] * 7, "other", "3 matches -> 0.9 (leave-one-out)"),
    ("red", ["red"] * 4 + ["blue"] * 6, "other", "4 matches -> 1.0"),
    ("  Red\n", ["red"] * 10, "other", "whitespace stripped, prediction lower-cased"),
    ("t-shirt", ["tshirt"] * 5 + ["t shirt"] * 5, "other", "hyphen -> space"),
    ("cat's", ["cats"] * 5 + ["cat"] * 5, "other", "apostrophe kept"),
    ("3:30", ["3:30"] * 6 + ["330"] * 4, "number", "colon kept"),
    ("no, it isn't", ["no"] * 10, "yes/no", "comma stripped, no partial credit"),
    ("Red", ["Red"] * 4 + ["red"] * 6, "other", "GT answers are not lower-cased"),
    ("t-shirt", ["t-shirt"] * 10, "other", "identical GT answers are not punctuation-processed"),
    ("t-shirt", ["t-shirt"] * 9 + ["shirt"], "other", "differing GT answers are processed"),
    ("the 3 dogs!", ["3 dogs"] * 3 + ["3"] * 7, "number", "article and exclamation"),
    ("yes (probably)", ["yes"] * 10, "yes/no", "brackets next to spaces deleted"),
    ("2.5", ["2.5"] * 4 + ["2"] * 6, "number", "period before digit kept"),
    ("ten.", ["10"] * 10, "number", "period stripped then number word"),
    ("an apple", ["apple"] * 3 + ["an apple"] * 7, "other", "GT articles are not dropped"),
    ("youre right", ["you're right"] * 5 + ["right"] * 5, "other", "contraction"),
    ("a/b", ["a b"] * 5 + ["ab"] * 5, "other", "slash -> space"),
    ("1,2", ["12"] * 10, "number", "digit,digit removes punctuation"),
    ("" , ["nothing"] * 10, "other", "empty prediction"),
    ("." * 40, ["." * 8] * 5 + ["x"] * 5, "other", "at most 32 periods are stripped"),
]

VQA_WORDS = ["yes", "no", "red", "blue", "two", "2", "3", "three", "dog", "cat", "t-shirt", "the",
             "a", "on the table", "left", "right", "don't know", "dont", "1,000", "0", "none"]
VQA_DECOR = ["", "", "", ".", "!", "?", ",", " ", "\n", "  "]


def load_vqa_eval(wheel):
    with zipfile.ZipFile(wheel) as z:
        src = z.read("lavis/common/vqa_tools/vqa_eval.py")
    tmp = os.path.join(tempfile.mkdtemp(prefix="refgen-vqa-"), "vqa_eval.py")
    open(tmp, "wb").write(src)
    spec = importlib.util.spec_from_file_location("vqa_eval", tmp)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.VQAEval


class _Store:
    def __init__(self, qa):
        self.qa = qa

    def getQuesIds(self):
        return list(self.qa)


def load_from_wheel(wheel, member, name):
    with zipfile.ZipFile(wheel) as z:
        src = z.read(member)
    tmp = os.path.join(tempfile.mkdtemp(prefix="refgen-"), name + ".py")
    open(tmp, "wb").write(src)
    spec = importlib.util.spec_from_file_location(name, tmp)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def xl_vlms_goldens(lmms_wheel, official):
    """xl-vlms' VQA accuracy (metrics/vqa_accuracy.py: vqav2_process_results and
    compute_vqav2_accuracy) on the official goldens' questions: EvalAIAnswerProcessor on the
    prediction, then punctuation and digits/articles once more; only process_digit_article on
    the answers; min(1, matches / 3) * 100; overall = mean of the per-answer-type means."""
    proc = load_from_wheel(lmms_wheel, "lmms_eval/tasks/_task_utils/vqa_eval_metric.py",
                           "vqa_eval_metric").EvalAIAnswerProcessor()
    questions, by_type = [], {}
    for q in official["questions"]:
        res = proc(q["prediction"])
        gts = [proc.process_digit_article(a) for a in q["answers"]]
        res = proc.process_digit_article(proc.process_punctuation(res))
        acc = min(1, float(len([g for g in gts if g == res])) / 3) * 100.0
        questions.append({"question_id": q["question_id"], "normalized_prediction": res, "accuracy": acc})
        by_type.setdefault(q["answer_type"], []).append(acc)
    import statistics
    per_type = {k: statistics.mean(v) for k, v in by_type.items()}
    return {"source": "EvalAIAnswerProcessor from lmms-eval 0.7.3 with xl-vlms' formula",
            "questions": questions, "per_answer_type": per_type,
            "overall": statistics.mean(list(per_type.values()))}


def vqa_goldens(wheel, rng):
    VQAEval = load_vqa_eval(wheel)
    cases = [(p, a, t, "quirk: " + n) for p, a, t, n in VQA_QUIRKS]
    for _ in range(120):
        def answer():
            w = rng.choice(VQA_WORDS)
            if rng.random() < 0.3:
                w = w.capitalize()
            return rng.choice(["", " "]) + w + rng.choice(VQA_DECOR)
        base = [answer() for _ in range(3)]
        gts = [rng.choice(base) for _ in range(10)]
        pred = rng.choice(base + [answer()])
        cases.append((pred, gts, rng.choice(["yes/no", "number", "other"]), "random"))
    gts, res = {}, {}
    qtypes = ["what color", "how many", "is the", "what is"]
    for i, (pred, answers, atype, _) in enumerate(cases):
        gts[i] = {"question_id": i, "question_type": qtypes[i % 4], "answer_type": atype,
                  "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": j + 1}
                              for j, x in enumerate(answers)]}
        res[i] = {"question_id": i, "answer": pred}
    ev = VQAEval(_Store(gts), _Store(res), n=2)
    ev.params = {"question_id": list(gts)}
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
    return {
        "source": "vqaEval.py from salesforce-lavis 1.0.2 (official VQA evaluator)",
        "questions": [{"question_id": i, "prediction": p, "answers": a, "answer_type": t,
                       "question_type": qtypes[i % 4], "note": n, "accuracy": ev.evalQA[i]}
                      for i, (p, a, t, n) in enumerate(cases)],
        "overall": ev.accuracy["overall"],
        "per_answer_type": ev.accuracy["perAnswerType"],
        "per_question_type": ev.accuracy["perQuestionType"],
    }


# ---------------------------------------------------------------- captions
FIXTURE_GTS = {
    "1": ["A cat sitting on a red sofa next to a window.", "A grey cat resting on a couch.",
          "The cat is lying on the red couch by the window.", "a cat on a sofa"],
    "2": ["Two dogs are playing with a ball in the park.", "Two dogs chase a ball on the grass.",
          "Dogs playing fetch in a green park."],
    "3": ["A man riding a bicycle down a busy city street at night.", "A cyclist on a street at night.",
          "A person rides a bike through traffic in the city."],
    "4": ["A plate with pizza, salad and a glass of water on a wooden table.",
          "Pizza and salad served on a table.", "A meal of pizza and salad with water."],
    "5": ["A small boat on the lake under a blue sky.", "A boat floating on a calm lake.",
          "The lake has a little boat on it and the sky is blue."],
}
FIXTURE_RES = {"1": "A cat is sitting on a red couch.", "2": "Two dogs play with a ball on the grass.",
               "3": "A man rides a bike on the street.", "4": "A pizza on a table.",
               "5": "A boat on a lake."}

SUBJECTS = ["a man", "a woman", "two dogs", "the cat", "a child", "people", "a group of people",
            "an old man", "the bus", "a red car", "three birds", "a young girl", "a dog"]
VERBS = ["is sitting on", "sits on", "running along", "rides", "riding", "standing next to",
         "looking at", "holds", "holding", "walks down", "playing with", "eating", "is on"]
OBJECTS = ["a bench", "the street", "a skateboard", "a table", "the beach", "a large pizza",
           "a white plate", "the grass", "a frisbee", "a horse", "a kite", "the water", "a sandwich"]
TAILS = ["", "", " in the park", " at night", " near a building", " on a sunny day", " with a ball",
         " in a kitchen", " by the window", " together"]
PUNCT = ["", ".", " .", "!", "?", "...", ",", " -- ", ";", ":"]
EXTRAS = ["it's", "doesn't", "can't", "cannot", "man's", "dogs'", "t-shirt", "10-year-old",
          "(smiling)", "\"happy\"", "2,000", "3.5", "u.s.", "mr. smith", "st. paul", "a/b",
          "black-and-white", "o'clock", "'cause", "they're", "we'll", "i'm", "well-lit",
          "$5", "50%", "#1", "&", "[sic]", "x-ray", "e.g.", "p.m.", "vs.", "etc.", "don't"]


def random_caption(rng):
    words = [rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS) + rng.choice(TAILS)]
    if rng.random() < 0.35:
        words.insert(rng.randrange(len(words) + 1), rng.choice(EXTRAS))
    if rng.random() < 0.15:  # repeated words, for n-gram clipping
        w = rng.choice(words).split()[-1]
        words.append(" ".join([w] * rng.randint(2, 4)))
    s = " ".join(words) + rng.choice(PUNCT)
    if rng.random() < 0.5:
        s = s[0].upper() + s[1:]
    return s


def caption_corpus(rng, n_images, n_refs):
    gts, res = {}, {}
    for i in range(n_images):
        key = f"r{i}"
        gts[key] = [random_caption(rng) for _ in range(n_refs)]
        r = rng.random()
        if r < 0.03:
            res[key] = ""  # empty hypothesis
        elif r < 0.10:
            res[key] = rng.choice(gts[key])  # exact copy of a reference
        else:
            res[key] = random_caption(rng)
    return gts, res


def meteor_modules(modules, weights):
    """pycocoevalcap's Meteor restricted to some modules (what xlvlm ports)."""
    import subprocess, threading
    from pycocoevalcap.meteor import meteor as meteor_mod

    class MeteorExactStem(meteor_mod.Meteor):
        def __init__(self):
            self.meteor_cmd = ['java', '-jar', '-Xmx2G', meteor_mod.METEOR_JAR, '-', '-', '-stdio',
                               '-l', 'en', '-norm', '-m', modules, '-w', weights]
            self.meteor_p = subprocess.Popen(self.meteor_cmd, cwd=os.path.dirname(os.path.abspath(meteor_mod.__file__)),
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.lock = threading.Lock()
    return MeteorExactStem()


def score_all(gts_raw, res_raw, with_meteor=True):
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    seconds = {}
    t = time.time()
    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in gts_raw.items()})
    res = tok.tokenize({k: [{"caption": v}] for k, v in res_raw.items()})
    seconds["ptb_tokenize"] = time.time() - t
    out = {"tok_gts": gts, "tok_res": {k: v[0] for k, v in res.items()}, "scores": {}, "per_image": {}}
    scorers = [("Bleu", Bleu(4)), ("ROUGE_L", Rouge()), ("CIDEr", Cider())]
    if with_meteor:
        scorers.append(("METEOR", None))
        scorers.append(("METEOR_exact_stem", ("exact stem", "1.0 0.6")))
        scorers.append(("METEOR_exact_stem_synonym", ("exact stem synonym", "1.0 0.6 0.8")))
    with contextlib.redirect_stdout(io.StringIO()):
        for name, scorer in scorers:
            t = time.time()
            if scorer is None:
                scorer = Meteor()
            elif isinstance(scorer, tuple):
                scorer = meteor_modules(*scorer)
            score, scores = scorer.compute_score(gts, res)
            seconds[name] = time.time() - t
            if name == "Bleu":
                for i in range(4):
                    out["scores"][f"Bleu_{i + 1}"] = score[i]
                    out["per_image"][f"Bleu_{i + 1}"] = dict(zip(gts.keys(), map(float, scores[i])))
            else:
                out["scores"][name] = float(score)
                out["per_image"][name] = dict(zip(gts.keys(), map(float, scores)))
    return out, seconds


PTB_CASES = [
    "A man's dog doesn't like the U.S. team, can't he? I'm sure they'll go.",
    "\"Hello,\" she said. 'Quoted' text isn't here... Wait -- what?!",
    "I cannot believe it's 3:30 p.m. at 5.5% & $10.50 (approx) [sic] {x}.",
    "A t-shirt/jeans combo, 1/2 pizza and 1/2/2015",
    "Mr. Smith and Dr. Who met at St. Paul's in Jan. 2015, etc.",
    "gonna wanna rock'n'roll don't ain't y'all o'clock 'cause",
    "A 10-year-old boy;  two  spaces\tand \"quotes\" plus 'single' and ``double''",
    "cafe café naïve résumé — em dash – en dash … ellipsis",
    "He said \"no.\" Then left. 2,000 people 1,000,000 3.14 -5 +5 #1 50%",
    "a b. c d.e. F.B.I. agents A.M. UK's U.K.",
    "a dog sits on a mat.", "the sign says no. The dog", "apples vs. oranges e.g. i.e. inc. co.",
    "1.5-inch 10-year-old 3-d x-ray.", "a cat's, dog's. can't won't shouldn't isn't",
    "the 1990s '90s 90's", "well...ok ... ok.. ok", "what?? yes!! why?! a*b a+b a=b",
    "x-ray x - ray x--ray x---ray -hello- hello-", "(a) [b] {c} a(b)c",
    "A BLACK AND WHITE PHOTO OF A DOG.", "Two dogs' toys", "A dog.,cat", "no. 5 fig. 2 ft. x lbs. x",
]


# Stress cases for the PTB emulation: caption-like tokens, many with punctuation, glued without
# a space 15% of the time (forms real captions rarely have, where the emulation is allowed a few
# known differences).
PTB_STRESS_POOL = [
    "A", "man", "The", "dog's", "dogs'", "it's", "isn't", "can't", "cannot", "won't", "I'm", "they're",
    "we've", "you'll", "he'd", "t-shirt", "10-year-old", "x-ray", "well-lit", "black-and-white", "U.S.",
    "U.S.A.", "e.g.", "i.e.", "etc.", "Mr.", "Dr.", "St.", "Jan.", "vs.", "p.m.", "a.m.", "No.", "3.5",
    "10:30", "2,000", "1/2", "50%", "$5", "$10.50", "#1", "&", "(", ")", "[", "]", "\"", "'", ",", ".",
    "!", "?", ";", ":", "-", "--", "...", "\u2026", "\u2014", "\u2013", "/", "TV", "OK", "o'clock",
    "rock'n'roll", "'90s", "y'all", "gonna", "wanna", "gotta", "caf\u00e9", "na\u00efve", "x", "a", "in",
    "on", "the", "with", "and", "photo", "image", "shows", "2.5x", "3rd", "1st", "4x4", "3D", "100", "-5",
    "+5", "5-10", "1990s", "e-mail", "co-op", "re-enter", "N.Y.", "L.A.", "Inc.", "Co.", "Corp.", "Ltd.",
    "Ave.", "Rd.", "ft.", "lbs.", "oz.", "no.", "fig.", "vol.", "pp.", "a/b", "and/or", "w/", "@", "*",
    "+", "=", "<", ">", "~", "^", "|", "_", "ok.", "etc..", "Yes!", "no?", "what?!", "(sic)", "[1]",
    "{x}", "\"hello\"", "'quoted'", "``", "''", "smile:)", ":)", ":(", "dog.The", "end.", "U.K.", "A.",
    "B.", "I.", "Z."]


def ptb_stress_cases(rng, n):
    cases = []
    for _ in range(n):
        s = ""
        for t in (rng.choice(PTB_STRESS_POOL) for _ in range(rng.randint(1, 10))):
            s += ("" if not s or rng.random() < 0.15 else " ") + t
        cases.append(s)
    return cases


# Base-form rules of METEOR's WordNet lookup (SynonymDictionary.morph).
DETACHMENTS = [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
               ("men", "man"), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
               ("ing", "e"), ("ing", ""), ("er", ""), ("est", ""), ("er", "e"), ("est", "e")]


def wordnet_subset(captions, out_dir):
    """The part of METEOR's WordNet synonym data that lookups on the words of `captions` read:
    synsets of the words, of their irregular base forms and of their detached forms."""
    import re
    from pycocoevalcap.meteor import meteor as meteor_mod
    jar = os.path.join(os.path.dirname(os.path.abspath(meteor_mod.__file__)), meteor_mod.METEOR_JAR)
    with zipfile.ZipFile(jar) as z:
        synsets = z.read("synonym/english.synsets").decode("utf-8").split("\n")
        exceptions = z.read("synonym/english.exceptions").decode("utf-8").split("\n")
        notice = z.read("synonym/COPYING.WORDNET").decode("utf-8")
    vocab = set()
    for c in captions:
        for tok in c.split():
            vocab.add(tok)
            vocab.add(tok.replace(".", ""))
            vocab.update(p for p in re.split(r"[^0-9a-z]+", tok) if p)
    keep_exc = []
    wanted = set(vocab)
    for base, forms in zip(exceptions[0::2], exceptions[1::2]):
        hit = [f for f in forms.split() if f in vocab]
        if hit:
            keep_exc += [base, " ".join(hit)]
            wanted.add(base)
    for w in vocab:
        wanted.update(w[: len(w) - len(s)] + r for s, r in DETACHMENTS if w.endswith(s))
    keep_syn = []
    for word, ids in zip(synsets[0::2], synsets[1::2]):
        if word in wanted:
            keep_syn += [word, ids]
    os.makedirs(out_dir, exist_ok=True)
    open(os.path.join(out_dir, "english.synsets"), "w").write("\n".join(keep_syn) + "\n")
    open(os.path.join(out_dir, "english.exceptions"), "w").write("\n".join(keep_exc) + "\n")
    open(os.path.join(out_dir, "COPYING.WORDNET"), "w").write(notice)


def caption_vocabulary(captions):
    """Words METEOR's normaliser can make of the tokens of `captions` (generously)."""
    import re
    vocab = set()
    for c in captions:
        for tok in c.split():
            vocab.update({tok, tok.replace(".", ""), tok.replace("-", "")})
            vocab.update(re.findall(r"[0-9a-z]+|[^0-9a-z]", tok))
            vocab.update("'" + p for p in re.findall(r"'([0-9a-z]+)", tok))
    return vocab


def paraphrase_subset(captions, out_dir):
    """The entries of METEOR's paraphrase table whose words all occur in `captions` (the others
    can never match them), in file order."""
    import gzip
    from pycocoevalcap.meteor import meteor as meteor_mod
    path = os.path.join(os.path.dirname(os.path.abspath(meteor_mod.__file__)), "data", "paraphrase-en.gz")
    vocab = caption_vocabulary(captions)
    kept = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        while True:
            prob = f.readline()
            if not prob:
                break
            first, second = f.readline(), f.readline()
            if all(w in vocab for w in (first + " " + second).split()):
                kept += [prob, first, second]
    os.makedirs(out_dir, exist_ok=True)
    open(os.path.join(out_dir, "paraphrase-en-subset.txt"), "w", encoding="utf-8").write("".join(kept))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", help="salesforce_lavis-1.0.2 wheel (for the VQA goldens)")
    ap.add_argument("--lmms-wheel", help="lmms_eval-0.7.3 wheel (for the xl-vlms VQA goldens)")
    ap.add_argument("--out", default="crates/metrics/tests/fixtures")
    ap.add_argument("--bench", type=int, default=0, help="write a benchmark corpus of N images instead")
    ap.add_argument("--bench-out", default="/tmp/xlvlm-metrics-bench.json")
    a = ap.parse_args()
    rng = random.Random(20261127)
    if a.bench:
        gts, res = caption_corpus(rng, a.bench, 5)
        t = time.time()
        out, seconds = score_all(gts, res, with_meteor=True)
        seconds["total"] = time.time() - t
        json.dump({"gts": gts, "res": res, "scores": out["scores"]}, open(a.bench_out, "w"))
        print(json.dumps({"images": a.bench, "seconds": seconds, "scores": out["scores"]}, indent=1))
        return
    os.makedirs(a.out, exist_ok=True)
    if a.wheel:
        official = vqa_goldens(a.wheel, rng)
        json.dump(official, open(os.path.join(a.out, "vqa_official.json"), "w"), indent=1)
        if a.lmms_wheel:
            json.dump(xl_vlms_goldens(a.lmms_wheel, official),
                      open(os.path.join(a.out, "vqa_xl_vlms.json"), "w"), indent=1)

    gts, res = dict(FIXTURE_GTS), dict(FIXTURE_RES)
    more_gts, more_res = caption_corpus(rng, 300, 5)
    gts.update(more_gts)
    res.update(more_res)
    out, _ = score_all(gts, res)
    out["raw_gts"], out["raw_res"] = gts, res
    out["source"] = "pycocoevalcap 1.2 (PTBTokenizer, Bleu(4), Meteor 1.5 jar in full and with -m 'exact stem', Rouge, Cider)"
    json.dump(out, open(os.path.join(a.out, "captions.json"), "w"), indent=1)
    all_tok = list(out["tok_res"].values()) + [c for v in out["tok_gts"].values() for c in v]
    wordnet_subset(all_tok, os.path.join(a.out, "wordnet_subset"))
    paraphrase_subset(all_tok, os.path.join(a.out, "paraphrase_subset"))

    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    tok = PTBTokenizer().tokenize({str(i): [{"caption": c}] for i, c in enumerate(PTB_CASES)})
    json.dump([{"raw": c, "tokens": tok[str(i)][0]} for i, c in enumerate(PTB_CASES)],
              open(os.path.join(a.out, "ptb_tokens.json"), "w"), indent=1)
    stress = ptb_stress_cases(random.Random(7), 600)
    tok = PTBTokenizer().tokenize({str(i): [{"caption": c}] for i, c in enumerate(stress)})
    json.dump([{"raw": c, "tokens": tok[str(i)][0]} for i, c in enumerate(stress)],
              open(os.path.join(a.out, "ptb_stress.json"), "w"), indent=0)
    print("scores", json.dumps(out["scores"], indent=1))


if __name__ == "__main__":
    sys.exit(main())
