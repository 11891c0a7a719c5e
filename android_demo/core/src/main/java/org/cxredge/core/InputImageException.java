package org.cxredge.core;

/** An image (or a crop box on it) that the pipeline cannot use: the Python {@code InputError}. */
public final class InputImageException extends CxrEdgeException {
    private static final long serialVersionUID = 1L;

    /**
     * @param problem what is wrong
     * @param expected what the pipeline needs
     * @param received what it got
     */
    public InputImageException(String problem, String expected, String received) {
        super(problem, expected, received);
    }
}
