package org.cxredge.demo

import android.content.res.AssetManager
import org.cxredge.core.FloatImage
import org.cxredge.core.Pipeline
import org.cxredge.core.Prediction

/**
 * The bundle in the assets, its LiteRT runner and the core pipeline, ready to classify images.
 * Create and use it on one worker thread (LiteRT interpreters are not thread-safe).
 */
class BundleClassifier(assets: AssetManager, threads: Int = 2) : AutoCloseable {
    val bundle: AssetBundle = AssetBundle.load(assets)
    private val runner = LiteRtModelRunner(bundle, threads)
    private val pipeline = Pipeline(bundle.manifest, runner)

    /** Names of the models that run, in ensemble order. */
    val members: List<String> = pipeline.members().map { it.name() }

    /** The combiner (`mean`, `weighted`, `vote`, `stacking`). */
    val method: String = pipeline.ensemble().method()

    /** decode -> (segment) -> preprocess -> classify -> combine -> heat map. */
    fun classify(image: FloatImage): Prediction = pipeline.predict(image)

    override fun close() = runner.close()
}
