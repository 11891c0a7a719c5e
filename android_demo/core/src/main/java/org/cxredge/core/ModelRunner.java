package org.cxredge.core;

import java.util.Map;

/**
 * Runs one model of the bundle: the only part of the pipeline that needs LiteRT. The Android app
 * implements it with the LiteRT {@code Interpreter}; tests implement it by returning the outputs
 * recorded in the golden vectors.
 *
 * <p>Tensors cross this interface in their storage type ({@link RawTensor}): the pipeline
 * quantises the input and dequantises the outputs itself ({@link Quantization}), so an
 * implementation only copies buffers.
 */
public interface ModelRunner {
    /**
     * Runs a model on one input.
     *
     * @param model the manifest entry of the model (its file, tensors and output roles)
     * @param input the input tensor, batch of one, in {@code model.input()}'s storage type
     * @return every output tensor by role ({@code probs}, {@code features}, {@code mask}), each in
     *     the storage type its manifest spec declares
     */
    Map<String, RawTensor> run(ModelFile model, RawTensor input);
}
