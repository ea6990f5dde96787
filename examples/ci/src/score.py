# The entry script, in the style of the classic Azure ML deployment walkthrough:
# init() loads the model once, run() answers each request. It runs unchanged on
# the Azure ML inference server and on every modelform target.
import json
import os

import joblib
import numpy as np


def init():
    global model
    # AZUREML_MODEL_DIR is the folder holding the registered model's files.
    model_path = os.path.join(os.getenv("AZUREML_MODEL_DIR"), "ridge.pkl")
    model = joblib.load(model_path)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    result = model.predict(data)
    return result.tolist()
