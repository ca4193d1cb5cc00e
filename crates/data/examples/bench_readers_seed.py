"""The reference for bench_readers: what the Python seed's COCODataset and VQAv2Dataset do when
they load annotations (json.load, split filter, join answers to questions by question_id).

    python3 bench_readers_seed.py WORLD_DIR [REPEATS]
"""
import json
import os
import statistics
import sys
import time


def read_karpathy(path, splits, image_root):
    with open(path) as f:
        data = json.load(f)
    items = []
    for image in data["images"]:
        if image["split"] not in splits:
            continue
        captions = [s["raw"] for s in image["sentences"]]
        items.append({
            "img_id": os.path.splitext(image["filename"])[0],
            "image": os.path.join(image_root, image["filepath"], image["filename"]),
            "response": captions[0],
            "targets": "$$".join(captions),
        })
    return items


def read_vqav2(questions_path, annotations_path, image_root, split):
    with open(annotations_path) as f:
        annotations = json.load(f)["annotations"]
    with open(questions_path) as f:
        questions = {q["question_id"]: q["question"] for q in json.load(f)["questions"]}
    items = []
    for a in annotations:
        items.append({
            "img_id": a["image_id"],
            "instruction": questions[a["question_id"]].strip(),
            "response": a["multiple_choice_answer"],
            "image": os.path.join(image_root, split, f"SHAPES_{split}_{a['image_id']:012d}.png"),
            "answer_type": a["answer_type"],
            "question_id": a["question_id"],
            "targets": "$$".join(x["answer"] for x in a["answers"]),
        })
    return items


def main():
    world = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with open(os.path.join(world, "world.json")) as f:
        summary = json.load(f)
    root = os.path.join(world, summary["image_root"])
    train = summary["splits"]["train"]
    karpathy_times, vqa_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        captions = len(read_karpathy(os.path.join(world, summary["captions_file"]),
                                     {"train", "val", "test"}, root))
        karpathy_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        questions = len(read_vqav2(os.path.join(world, train["questions_file"]),
                                   os.path.join(world, train["annotations_file"]), root, "train"))
        vqa_times.append(time.perf_counter() - start)
    print(f"karpathy: {captions} images in {statistics.median(karpathy_times):.3f} s; "
          f"vqav2 train: {questions} questions in {statistics.median(vqa_times):.3f} s "
          f"(median of {repeats})")


if __name__ == "__main__":
    main()
