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


def on_twin(desired):
    # IoT Edge only (other targets never call it): the module twin's desired
    # properties, once after init() and again after every change in the
    # project file's module.desired_properties, without a restart.
    print(f"desired properties: threshold={desired.get('threshold')}", flush=True)
