package org.cxredge.core;

import java.util.Map;

/** What a {@link ModelRunner} needs to know about one {@code .tflite} file of a bundle. */
public interface ModelFile extends BundleFile {
    /** Unique name in the bundle, e.g. {@code custom_cnn-int8}. */
    String name();

    /** The input tensor. */
    TensorSpec input();

    /** Output tensors by role ({@code probs}, {@code features}, {@code mask}), in manifest order. */
    Map<String, TensorSpec> outputs();
}
