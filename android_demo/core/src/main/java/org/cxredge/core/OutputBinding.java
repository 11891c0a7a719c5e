package org.cxredge.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Which output tensor of a {@code .tflite} file holds which manifest role. TFLite does not keep
 * Keras output order, so roles are matched by shape, then every tensor is checked against its
 * manifest spec (type, scale, zero point), as the Python engine does: a manifest that lies about
 * its model is refused before anything runs.
 */
public final class OutputBinding {
    private final Map<String, Integer> indexByRole;

    private OutputBinding(Map<String, Integer> indexByRole) {
        this.indexByRole = Collections.unmodifiableMap(indexByRole);
    }

    /**
     * Binds a model's declared outputs to the file's output tensors.
     *
     * @param model the manifest entry
     * @param actualInput the file's input tensor
     * @param actualOutputs the file's output tensors, in the interpreter's index order
     * @throws BundleFormatException the file and the manifest disagree
     */
    public static OutputBinding match(ModelFile model, TensorSpec actualInput, List<TensorSpec> actualOutputs) {
        check(model.name(), "input", model.input(), actualInput);
        Map<String, TensorSpec> declared = model.outputs();
        if (declared.size() != actualOutputs.size()) {
            throw new BundleFormatException(null, "model " + model.name() + ": manifest and file disagree on outputs",
                    declared.size() + " outputs (" + String.join(", ", declared.keySet()) + ")",
                    String.valueOf(actualOutputs.size()));
        }
        List<Integer> remaining = new ArrayList<>();
        for (int i = 0; i < actualOutputs.size(); i++) {
            remaining.add(i);
        }
        Map<String, Integer> bound = new LinkedHashMap<>();
        for (Map.Entry<String, TensorSpec> e : declared.entrySet()) {
            Integer hit = null;
            for (Integer i : remaining) {
                if (actualOutputs.get(i).hasShape(e.getValue().shape())) {
                    hit = i;
                    break;
                }
            }
            if (hit == null) {
                List<String> shapes = new ArrayList<>();
                for (Integer i : remaining) {
                    shapes.add(Arrays.toString(actualOutputs.get(i).shape()));
                }
                throw new BundleFormatException(null, "model " + model.name() + ": no output of the declared "
                        + e.getKey() + " shape", Arrays.toString(e.getValue().shape()), shapes.toString());
            }
            remaining.remove(hit);
            check(model.name(), e.getKey() + " output", e.getValue(), actualOutputs.get(hit));
            bound.put(e.getKey(), hit);
        }
        return new OutputBinding(bound);
    }

    private static void check(String name, String which, TensorSpec declared, TensorSpec actual) {
        if (!declared.matches(actual)) {
            throw new BundleFormatException(null, "model " + name + ": manifest " + which
                    + " does not match the model file", actual.toString(), declared.toString());
        }
    }

    /** The interpreter output index of each role, in manifest order. */
    public Map<String, Integer> indexByRole() {
        return indexByRole;
    }

    /** The interpreter output index of one role. */
    public int index(String role) {
        Integer i = indexByRole.get(role);
        if (i == null) {
            throw new ModelOutputException("no such output role", "one of " + indexByRole.keySet(), role);
        }
        return i;
    }
}
