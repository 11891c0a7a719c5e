package org.cxredge.core;

/**
 * A trust policy applies and the bundle is unsigned, signed by a key the device does not trust, changed
 * since signing, or its {@code signature.json} is malformed: the counterpart of the Python runtime's
 * {@code UntrustedBundleError} ({@code cxr_edge.bundle.signature}). Messages are Python's, word for word.
 */
public final class UntrustedBundleException extends CxrEdgeException {
    private static final long serialVersionUID = 1L;

    /**
     * @param problem what is wrong
     * @param expected what the policy needed
     * @param received what the bundle has
     */
    public UntrustedBundleException(String problem, String expected, String received) {
        super(problem, expected, received);
    }
}
