package org.cxredge.demo

import android.content.res.AssetManager
import java.io.IOException
import org.cxredge.core.BundleFormatException
import org.cxredge.core.BundleManifest
import org.cxredge.core.ModelFile
import org.cxredge.core.Sha256

/**
 * A cxr-edge bundle packaged in the APK's assets (`assets/bundle/`: `manifest.json` and the `.tflite`
 * files it names), loaded like the Python `Bundle.load`: the manifest is parsed and checked by the core,
 * every model file must be present and match its sha256, or the bundle is refused.
 */
class AssetBundle private constructor(
    val manifest: BundleManifest,
    private val files: Map<String, ByteArray>,
) {
    /** The verified bytes of a model file. */
    fun bytesOf(model: ModelFile): ByteArray =
        files[model.name()] ?: throw BundleFormatException(
            null, "model not in the bundle", "one of ${files.keys}", model.name(),
        )

    companion object {
        /** Folder of the bundle inside `assets/` (filled by the app's `copyCxrAssets` Gradle task). */
        const val FOLDER = "bundle"

        /** Loads and verifies the bundle in `assets/<folder>`. */
        fun load(assets: AssetManager, folder: String = FOLDER): AssetBundle {
            val manifestPath = "$folder/${BundleManifest.FILE_NAME}"
            val text = try {
                assets.open(manifestPath).use { it.readBytes().toString(Charsets.UTF_8) }
            } catch (e: IOException) {
                throw BundleFormatException(
                    null, "not a bundle", "assets/$manifestPath (see android_demo/README.md)", "no such asset",
                )
            }
            val manifest = BundleManifest.parse(text)
            val files = LinkedHashMap<String, ByteArray>()
            for (model in manifest.modelFiles()) {
                val bytes = try {
                    assets.open("$folder/${model.file()}").use { it.readBytes() }
                } catch (e: IOException) {
                    throw BundleFormatException(null, "bundle is incomplete", "model file ${model.file()}", "missing")
                }
                Sha256.verify(model, bytes)
                files[model.name()] = bytes
            }
            return AssetBundle(manifest, files)
        }
    }
}
