"""Chooses the sample X-rays shipped in the package: test-split images whose licences allow it.

Run ``python -m cxr_edge.convert.samples --manifest ../shared/data/manifest.csv --split splits/kit.csv``.
Samples come from the *test* split (never seen in training or model selection), one image per patient,
only from CC BY 3.0 (Hannover), NIH ChestX-ray8, Kermany et al. (CC BY 4.0) and the Shenzhen set
(NLM, free reuse with citation; its CC BY-NC-SA masks are not shipped); Montreal figures (CC BY-NC-SA)
and CXNet's journal figures (publishers' terms per image) are excluded. An attribution file is written
beside them. The first twenty samples (Hannover, NIH) are those of the first release: the quotas of
the new sources come after them, so the seeded draw leaves the earlier ones unchanged.
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import click

from cxr_edge.dataset.manifest import load_manifest
from cxr_edge.dataset.samples import SAMPLES_CSV, samples_dir
from cxr_edge.dataset.splits import read_split

#: (source, label) -> number of samples.
QUOTA = {
    ("hannover", "covid"): 6,
    ("nih", "normal"): 7,
    ("nih", "pneumonia_unknown"): 7,
    ("kermany", "normal"): 2,
    ("kermany", "bacterial"): 2,
    ("kermany", "viral"): 2,
    ("shenzhen", "normal"): 3,
}

ATTRIBUTION = """# Sample images: sources and licences

These chest X-rays come from the project's data kit (downscaled to at most 512 px, 8-bit PNG) and
were drawn from the kit's **test** split, so the default bundle never trained on them.

- `covid_*`: COVID-19 Image Repository, Institute for Diagnostic and Interventional Radiology,
  Hannover Medical School (MHH), Germany. Winther HB et al., doi:10.6084/m9.figshare.12275009.
  Licence: CC BY 3.0 (https://creativecommons.org/licenses/by/3.0/). Changes: downscaled, 8-bit PNG.
- `normal_*`, `pneumonia_unknown_*`: NIH ChestX-ray8 (Wang X et al., "ChestX-ray8", CVPR 2017),
  courtesy of the NIH Clinical Center (https://nihcc.app.box.com/v/ChestXray-NIHCC). The NIH Clinical
  Center places no restrictions on use and asks for this acknowledgement and citation. Labels are
  NLP-mined from reports ("No finding" -> normal, "Pneumonia" -> pneumonia_unknown: organism unknown).
- `*_kermany_*`: paediatric chest films of Guangzhou Women and Children's Medical Center (Kermany DS
  et al., Cell 2018; data doi:10.17632/rscbjbr9sj.2). Licence: CC BY 4.0
  (https://creativecommons.org/licenses/by/4.0/). Changes: the upstream 224x224 re-save, 8-bit PNG.
- `*_shenzhen_*`: Shenzhen No.3 People's Hospital chest X-ray set, collected with the US National
  Library of Medicine (Jaeger S et al., Quant Imaging Med Surg 2014; Candemir S et al., IEEE TMI
  2014). Free to reuse with this citation. Changes: the upstream 512x512 re-save, 8-bit PNG.

`samples.csv` lists each file with its label, source, licence and upstream location.
"""


@click.command()
@click.option("--manifest", "manifest_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--split", "split_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--out", default=None, type=click.Path(file_okay=False), help="Default: the package's samples folder."
)
@click.option("--seed", default=0, show_default=True)
def main(manifest_path, split_path, out, seed):
    """Copy licence-compatible test-split images into the package's sample folder."""
    manifest = load_manifest(manifest_path)
    test = read_split(split_path, manifest).records(manifest, "test")
    out_dir = Path(out) if out else samples_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for (source, label), n in QUOTA.items():
        by_patient: dict[str, list] = {}
        for r in test:
            if (r.source, r.label) == (source, label):
                by_patient.setdefault(r.patient_id, []).append(r)
        patients = sorted(by_patient)
        rng.shuffle(patients)
        for pid in patients[:n]:
            record = sorted(by_patient[pid], key=lambda r: r.path)[0]
            name = f"{label}_{source}_{Path(record.path).name}"
            shutil.copyfile(record.file, out_dir / name)
            rows.append(
                {
                    "file": name,
                    "label": label,
                    "source": source,
                    "license": record.license,
                    "original_path": record.original_path,
                }
            )
    with open(out_dir / SAMPLES_CSV, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "ATTRIBUTION.md").write_text(ATTRIBUTION, encoding="utf-8")
    click.echo(f"{len(rows)} samples written to {out_dir}")


if __name__ == "__main__":
    main()
