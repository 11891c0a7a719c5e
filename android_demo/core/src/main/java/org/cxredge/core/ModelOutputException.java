package org.cxredge.core;

/**
 * A {@link ModelRunner} returned outputs that do not match the model's manifest entry (a missing
 * role, a wrong size or type): the Python {@code ModelRuntimeError}.
 */
public final class ModelOutputException extends CxrEdgeException {
    private static final long serialVersionUID = 1L;

    /**
     * @param problem what is wrong
     * @param expected what the manifest declares
     * @param received what the runner gave
     */
    public ModelOutputException(String problem, String expected, String received) {
        super(problem, expected, received);
    }
}
