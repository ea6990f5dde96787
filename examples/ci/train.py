"""Train the quickstart's model: ridge regression on scikit-learn's diabetes data.

The data set ships inside scikit-learn, so nothing is downloaded. Run again
with another --alpha to "retrain": the model file's content changes, and
`modelform plan` shows the new model version.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "models" / "ridge.pkl")
    args = parser.parse_args()
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    model = Ridge(alpha=args.alpha).fit(x_train, y_train)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, args.out)
    print(
        f"trained ridge (alpha={args.alpha}), R² on held-out data {model.score(x_test, y_test):.3f}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
